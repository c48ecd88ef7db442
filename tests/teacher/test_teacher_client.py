"""TeacherClient against the simulated teacher: every fault is retried or classified, keys never leak."""

from __future__ import annotations

import socket
import time

import pytest

from tracesynth.errors import AuthError
from tracesynth.sim import SimTeacher
from tracesynth.teacher import ItemError, TeacherClient

MSG = [{"role": "user", "content": "What is 17 + 25?"}]
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}


@pytest.mark.parametrize("http", ["aiohttp", "openai"])
@pytest.mark.parametrize(
    "fault, billed",
    [("429", 0), ("500", 0), ("502", 0), ("503", 0), ("drop_body", 1), ("malformed", 1), ("empty_choices", 1)],
)
async def test_each_fault_is_retried_then_succeeds(http: str, fault: str, billed: int) -> None:
    async with SimTeacher(script=[fault], retry_after_s=0.0) as sim:
        async with TeacherClient(sim.base_url, model="sim-reasoner", http=http, **FAST) as client:
            r = await client.chat(MSG, max_tokens=300)
    assert r.attempts == 2 and r.possibly_billed == billed
    assert r.choices[0].content.endswith("\\boxed{42}.") and r.choices[0].reasoning
    assert r.usage.completion_tokens > 0 and r.endpoint == sim.base_url
    assert sum(client.events.values()) == 1


async def test_hang_times_out_counts_possibly_billed_and_retries() -> None:
    async with SimTeacher(script=["hang"]) as sim:
        async with TeacherClient(sim.base_url, model="m", timeout_s=0.5, **FAST) as client:
            t0 = time.monotonic()
            r = await client.chat(MSG, max_tokens=200)
    assert r.attempts == 2 and r.possibly_billed == 1 and client.events["timeout"] == 1
    assert 0.5 <= time.monotonic() - t0 < 5


async def test_retry_after_is_honoured() -> None:
    async with SimTeacher(script=["429"], retry_after_s=0.4) as sim:
        async with TeacherClient(sim.base_url, model="m", backoff_base_s=0.01, backoff_max_s=5) as client:
            t0 = time.monotonic()
            await client.chat(MSG, max_tokens=100)
    assert time.monotonic() - t0 >= 0.4
    assert client.flow.limit.decreases == 1  # AIMD saw the 429


async def test_a_backoff_sleep_is_announced_and_counted_while_it_lasts() -> None:
    """The harvester starts a stand-in worker from this hook, so the sleeper's slot does not idle."""
    seen: list[int] = []
    async with SimTeacher(script=["429", "500"], retry_after_s=0.2) as sim:
        async with TeacherClient(sim.base_url, model="m", backoff_base_s=0.01, backoff_max_s=5) as client:
            client.on_backoff = lambda: seen.append(client.backing_off)
            r = await client.chat(MSG, max_tokens=100)
    assert r.attempts == 3 and seen == [1, 1] and client.backing_off == 0


async def test_retries_run_out_into_an_item_error() -> None:
    async with SimTeacher(rate_500=1.0) as sim:
        async with TeacherClient(sim.base_url, model="m", max_attempts=3, **FAST) as client:
            with pytest.raises(ItemError) as info:
                await client.chat(MSG, max_tokens=100)
    assert info.value.kind == "server_error" and info.value.attempts == 3 and info.value.status == 500
    assert "gave up after 3 attempts" in str(info.value)


@pytest.mark.parametrize("http", ["aiohttp", "openai"])
async def test_client_errors_are_item_errors_without_retry(http: str) -> None:
    async with SimTeacher(strict_model=True) as sim:
        async with TeacherClient(sim.base_url, model="no-such-model", http=http, **FAST) as client:
            with pytest.raises(ItemError) as info:
                await client.chat(MSG, max_tokens=100)
            assert info.value.kind == "not_found" and info.value.attempts == 1
            assert "does not exist" in str(info.value)
        async with TeacherClient(sim.base_url, model="sim-reasoner", http=http, **FAST) as client:
            with pytest.raises(ItemError) as info:
                await client.chat([], max_tokens=100)
            assert info.value.kind == "bad_request" and info.value.status == 400


@pytest.mark.parametrize("http", ["aiohttp", "openai"])
async def test_wrong_key_is_an_auth_error_naming_endpoint_not_key(http: str) -> None:
    secret = "sk-wrong-0123456789abcdef"
    async with SimTeacher(api_key="sk-right-key") as sim:
        async with TeacherClient(
            sim.base_url, model="m", api_key=secret, api_key_env="MY_TEACHER_KEY", http=http, **FAST
        ) as client:
            with pytest.raises(AuthError) as info:
                await client.chat(MSG, max_tokens=10)
    msg = str(info.value)
    assert sim.base_url in msg and "MY_TEACHER_KEY" in msg and "401" in msg
    assert secret not in msg and "sk-" not in msg
    assert client.events["auth"] == 1


async def test_dead_endpoint_is_benched_and_traffic_goes_to_the_live_one() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    async with SimTeacher() as sim:
        async with TeacherClient([dead, sim.base_url], model="m", bench_after=2, bench_s=60, **FAST) as client:
            results = [await client.chat(MSG, max_tokens=50) for _ in range(6)]
    assert all(r.endpoint == sim.base_url for r in results)
    assert client.pool.benched() == [dead]
    assert client.events["connection"] >= 1


async def test_n_choices_and_completions() -> None:
    async with SimTeacher() as sim:
        async with TeacherClient(sim.base_url, model="m", **FAST) as client:
            r = await client.chat(MSG, n=3, max_tokens=300, seed=1)
            assert [c.index for c in r.choices] == [0, 1, 2]
            c = await client.complete("Question: 2+2?\n<think>\n", max_tokens=16)
    assert c.choices[0].reasoning is None and c.choices[0].content and c.usage.completion_tokens <= 16


@pytest.mark.parametrize("placement", ["reasoning_content", "reasoning", "think", "r1_distill"])
async def test_every_reasoning_placement_normalises_the_same(placement: str) -> None:
    async with SimTeacher(reasoning=placement, seed=3) as sim:
        async with TeacherClient(sim.base_url, model="m", **FAST) as client:
            r = await client.chat(MSG, max_tokens=400)
    c = r.choices[0]
    assert c.reasoning and "<think>" not in c.reasoning and "</think>" not in c.content
    assert c.content.endswith("\\boxed{42}.")
