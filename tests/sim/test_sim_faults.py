"""Every deliberate fault of the simulated teacher, as a client sees it (no retries anywhere)."""

from __future__ import annotations

import json
import random
import statistics
import time

import httpx
import openai
import pytest

from tracesynth.sim import SimTeacher
from tracesynth.sim.faults import Bucket, fmt_reset
from tracesynth.sim.options import Latency, SimOptions

MSGS = [{"role": "user", "content": "Calculate 123 + 456."}]
BODY = {"model": "m", "messages": MSGS}


def oai(sim, timeout: float = 10.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=timeout)


def post(http: httpx.Client, sim, body=None, **kw) -> httpx.Response:
    return http.post(sim.base_url + "/chat/completions", json=body or BODY, **kw)


def test_scripted_http_errors_reach_the_client():
    with SimTeacher(script=["429", "500", "502", "503", "ok"], retry_after_s=2.5) as sim, httpx.Client() as http:
        r = post(http, sim)
        assert r.status_code == 429 and r.headers["retry-after"] == "3" and r.headers["retry-after-ms"] == "2500"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        r = post(http, sim)
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        r = post(http, sim)
        assert r.status_code == 502 and r.headers["content-type"] == "text/html" and "Bad Gateway" in r.text
        r = post(http, sim)
        assert r.status_code == 503 and "overloaded" in r.json()["error"]["message"]
        assert post(http, sim).status_code == 200
        assert sim.stats()["faults"] == {"429": 1, "500": 1, "502": 1, "503": 1}
    with SimTeacher(script=["429", "500", "502", "503"]) as sim:
        c = oai(sim)
        for exc in (
            openai.RateLimitError,
            openai.InternalServerError,
            openai.InternalServerError,
            openai.InternalServerError,
        ):
            with pytest.raises(exc):
                c.chat.completions.create(model="m", messages=MSGS)


@pytest.mark.parametrize("stream", [False, True])
def test_hang_until_the_client_times_out(stream):
    with SimTeacher(script=["hang"], hang_s=30) as sim:
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            r = oai(sim, timeout=0.5).chat.completions.create(model="m", messages=MSGS, stream=stream)
            for _ in r:
                pass
        assert 0.4 < time.monotonic() - t0 < 5
        deadline = time.monotonic() + 5
        while sim.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.stats()["in_flight"] == 0  # the server let go once the client left


def test_connection_dropped_mid_body():
    with SimTeacher(script=["drop_body", "drop_body"]) as sim:
        with httpx.Client() as http, pytest.raises(httpx.RemoteProtocolError):
            post(http, sim)
        with pytest.raises(openai.APIConnectionError):
            oai(sim).chat.completions.create(model="m", messages=MSGS)
        assert oai(sim).chat.completions.create(model="m", messages=MSGS).choices


def test_connection_dropped_mid_stream():
    with SimTeacher(script=["drop_stream"]) as sim:
        got = []
        with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
            for chunk in oai(sim).chat.completions.create(model="m", messages=MSGS, stream=True):
                got.append(chunk)
        assert len(got) > 3  # part of the stream arrived, then the connection went away


def test_malformed_json_and_empty_choices():
    with SimTeacher(script=["malformed", "empty_choices", "malformed", "empty_choices"]) as sim:
        with httpx.Client() as http:
            r = post(http, sim)
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            with pytest.raises(json.JSONDecodeError):
                r.json()
            r = post(http, sim)
            assert r.json()["choices"] == [] and r.json()["usage"]["completion_tokens"] > 0
        c = oai(sim)
        with pytest.raises(json.JSONDecodeError):
            c.chat.completions.create(model="m", messages=MSGS, stream=True).__next__()
        assert list(c.chat.completions.create(model="m", messages=MSGS, stream=True)) == []


def test_latency_fixed_uniform_lognormal_and_token_delay():
    with SimTeacher(latency=0.3) as sim, httpx.Client() as http:
        t0 = time.monotonic()
        assert post(http, sim).status_code == 200
        assert 0.29 < time.monotonic() - t0 < 2.0
    assert Latency.model_validate("uniform:0.1:0.2") == Latency(kind="uniform", a=0.1, b=0.2)
    rng = random.Random(0)
    uni = [Latency.model_validate("uniform:0.1:0.2").sample(rng) for _ in range(2000)]
    assert 0.1 <= min(uni) and max(uni) <= 0.2 and abs(statistics.mean(uni) - 0.15) < 0.005
    logn = [Latency.model_validate("lognormal:0.5:0.8").sample(rng) for _ in range(4000)]
    assert abs(statistics.median(logn) - 0.5) < 0.05 and max(logn) > 2.0
    with pytest.raises(ValueError, match="bad latency spec"):
        SimOptions(latency="gaussian:1")
    with SimTeacher(token_delay_s=0.002, stream_chunk_tokens=8) as sim:
        t0 = time.monotonic()
        chunks = list(
            oai(sim).chat.completions.create(
                model="m", messages=MSGS, stream=True, stream_options={"include_usage": True}
            )
        )
        elapsed = time.monotonic() - t0
        tokens = chunks[-1].usage.completion_tokens
        assert 0.002 * tokens * 0.9 < elapsed < 0.002 * tokens + 2.0


def test_fault_rates_are_seeded_reproducible_and_a_retry_gets_a_fresh_draw():
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"What is {i} + {i * 3}?"}]} for i in range(400)]

    def statuses(order):
        with SimTeacher(seed=11, rate_500=0.2, rate_503=0.1) as sim, httpx.Client() as http:
            return {i: post(http, sim, bodies[i]).status_code for i in order}

    first = statuses(range(400))
    shuffled = list(range(400))
    random.Random(1).shuffle(shuffled)
    assert statuses(shuffled) == first  # per-request, not per-arrival-slot
    n500 = sum(s == 500 for s in first.values())
    n503 = sum(s == 503 for s in first.values())
    assert abs(n500 - 80) < 32 and abs(n503 - 40) < 25  # ~4 sd of binomial(400, p)
    with SimTeacher(seed=11, rate_500=0.5) as sim, httpx.Client() as http:
        codes = [post(http, sim).status_code for _ in range(30)]  # the same body, retried
        assert 200 in codes and 500 in codes


def test_rate_options_are_validated():
    with pytest.raises(ValueError, match="add up to"):
        SimOptions(rate_500=0.7, rate_hang=0.5)
    assert SimOptions(script="429, ok,hang").script == ["429", "ok", "hang"]
    with pytest.raises(ValueError):
        SimOptions(script=["teapot"])


def test_token_bucket_refills_and_formats_reset_like_openai():
    now = [0.0]
    b = Bucket(60, clock=lambda: now[0])
    b.take(60)
    assert b.wait_for(1) == pytest.approx(1.0)
    now[0] = 0.5
    assert b.wait_for(1) == pytest.approx(0.5)
    now[0] = 30.0
    assert b.wait_for(30) == 0.0 and b.wait_for(61) == float("inf")
    assert fmt_reset(0.02) == "20ms" and fmt_reset(1.5) == "1.5s" and fmt_reset(360) == "6m0s"
