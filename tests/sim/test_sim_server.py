"""The simulated teacher over HTTP: the official openai client (sync, async, streaming) against
every reasoning placement, the completions endpoint, auth, limits, the CLI process and shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from tracesynth.sim import SimOptions, SimProcess, SimTeacher
from tracesynth.sim.tokens import count_tokens

Q = "Calculate 4782 + 395 - 18.\n\nPlease reason step by step, and put your final answer within \\boxed{}."
MSGS = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": Q}]
ANSWER = "5159"
PLACEMENTS = ["reasoning_content", "reasoning", "think", "r1_distill", "undelimited", "sky_t1"]
NO_PARSER = ("undelimited", "sky_t1")  # served as plain text: the server counts no reasoning tokens


def boxed(text: str | None) -> str | None:
    found = re.findall(r"\\boxed\{([^{}]*)\}", text or "")
    return found[-1] if found else None


def split(placement: str, message: dict) -> tuple[str, str]:
    """What a client must do for each placement to get (reasoning, answer) back."""
    content = message.get("content") or ""
    if placement in ("reasoning_content", "reasoning"):
        return message[placement], content
    if placement == "undelimited":  # QwQ-32B-Preview: plain text, the boxed answer in its last paragraph
        assert not any(m in content for m in ("<think>", "</think>", "<|begin_of_thought|>"))
        reasoning, _, answer = content.rpartition("\n\n")
        return reasoning, answer
    if placement == "sky_t1":
        m = re.fullmatch(
            r"<\|begin_of_thought\|>\n\n(.*)\n\n<\|end_of_thought\|>\n\n"
            r"<\|begin_of_solution\|>\n\n(.*)\n\n<\|end_of_solution\|>",
            content,
            re.S,
        )
        assert m is not None, content
        return m.group(1), m.group(2)
    if placement == "think":
        assert content.startswith("<think>\n")
        content = content[len("<think>\n") :]
    assert "<think>" not in content
    reasoning, _, answer = content.partition("\n</think>\n\n")
    return reasoning, answer


@pytest.fixture(scope="module", params=PLACEMENTS)
def sim(request):
    with SimTeacher(reasoning=request.param, seed=1) as s:
        yield s


def client(sim, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0, timeout=10, **kw)


def test_sync_chat_non_streaming(sim):
    placement = sim.options.reasoning
    r = client(sim).chat.completions.create(model="any-model", messages=MSGS, n=2, temperature=0.6)
    assert r.model == "any-model" and r.object == "chat.completion" and len(r.choices) == 2
    total = reasoning_total = 0
    for choice in r.choices:
        assert choice.finish_reason == "stop"
        reasoning, answer = split(placement, choice.message.model_dump())
        assert "column by column" not in reasoning and "2+5+0=7, write 7, carry 0" in reasoning
        assert boxed(answer) == ANSWER
        total += count_tokens(choice.message.content or "") + count_tokens(
            (choice.message.model_extra or {}).get(placement, "") if placement.startswith("reason") else ""
        )
        reasoning_total += count_tokens(reasoning)
    assert r.usage.completion_tokens == total
    assert r.usage.completion_tokens_details.reasoning_tokens == (0 if placement in NO_PARSER else reasoning_total)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_sync_chat_streaming_matches_non_streaming(sim):
    placement = sim.options.reasoning
    c = client(sim)
    full = c.chat.completions.create(model="m", messages=MSGS, seed=5)
    parts: dict[str, str] = {}
    finish, usage, roles = None, None, []
    for chunk in c.chat.completions.create(
        model="m", messages=MSGS, seed=5, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
            continue
        delta = chunk.choices[0].delta
        roles += [delta.role] if delta.role else []
        for name, value in {"content": delta.content, **(delta.model_extra or {})}.items():
            if value:
                parts[name] = parts.get(name, "") + value
        finish = chunk.choices[0].finish_reason or finish
    assert roles == ["assistant"] and finish == "stop"
    msg = full.choices[0].message.model_dump()
    assert parts.get("content") == msg["content"]
    if placement.startswith("reason"):
        assert parts[placement] == msg[placement]
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens


async def test_async_chat_streaming_and_not(sim):
    placement = sim.options.reasoning
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=10) as ac:
        results = await asyncio.gather(
            *[
                ac.chat.completions.create(model="m", messages=[{"role": "user", "content": f"What is {i} * 37?"}])
                for i in range(20)
            ]
        )
        for i, r in enumerate(results):
            assert boxed(split(placement, r.choices[0].message.model_dump())[1]) == str(i * 37)
        text = ""
        stream = await ac.chat.completions.create(model="m", messages=MSGS, stream=True)
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        assert boxed(text) == ANSWER


def test_max_tokens_cuts_with_length(sim):
    c = client(sim)
    r = c.chat.completions.create(model="m", messages=MSGS, max_tokens=25)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 25
    r = c.chat.completions.create(
        model="m", messages=MSGS, max_completion_tokens=30, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(r)
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 30


def test_stop_and_temperature_zero(sim):
    c = client(sim)
    r = c.chat.completions.create(model="m", messages=MSGS, stop=["carry 1"], n=3, temperature=0)
    texts = [str(ch.message.model_dump()) for ch in r.choices]
    assert len(set(texts)) == 1  # greedy: every choice the same
    assert all(ch.finish_reason == "stop" and "carry 1" not in texts[0] for ch in r.choices)


def test_completions_budget_forcing_round_trip():
    head = f"<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n<think>\n"
    with SimTeacher(seed=3, wrong_rate=1.0) as sim:
        c = client(sim)
        first = c.completions.create(model="m", prompt=head, max_tokens=4000, stop=["</think>"])
        assert first.object == "text_completion" and first.choices[0].finish_reason == "stop"
        thinking = first.choices[0].text
        assert "Step 1:" in thinking and "</think>" not in thinking
        assert first.usage.prompt_tokens == count_tokens(head)
        assert first.usage.completion_tokens == count_tokens(thinking)
        more = c.completions.create(model="m", prompt=head + thinking + "Wait", max_tokens=4000)
        assert more.choices[0].text.startswith(", let me check the steps again.")
        assert boxed(more.choices[0].text) is not None
        cut = c.completions.create(model="m", prompt=head, max_tokens=5)
        assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 5
        streamed = "".join(
            ch.choices[0].text
            for ch in c.completions.create(model="m", prompt=head, max_tokens=4000, stream=True)
            if ch.choices
        )
        assert streamed == c.completions.create(model="m", prompt=head, max_tokens=4000).choices[0].text


def test_models_health_stats_and_bad_requests():
    with SimTeacher(model="teacher-x") as sim:
        c = client(sim)
        assert [m.id for m in c.models.list()] == ["teacher-x"]
        assert httpx.get(sim.url + "/health").json() == {"status": "ok"}
        r = httpx.post(sim.base_url + "/chat/completions", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        with pytest.raises(openai.BadRequestError, match="'n' must be"):
            c.chat.completions.create(model="m", messages=MSGS, n=0)
        with pytest.raises(openai.BadRequestError, match="messages"):
            c.chat.completions.create(model="m", messages=[])
        assert httpx.get(sim.base_url + "/nope").status_code == 404
        stats = httpx.get(sim.url + "/stats").json()
        assert stats["status"]["400"] == 3 and stats["routes"]["/v1/models"] == 1
    with SimTeacher(strict_model=True) as sim, pytest.raises(openai.NotFoundError, match="does not exist"):
        client(sim).chat.completions.create(model="other", messages=MSGS)


def test_bearer_auth_401_body():
    with SimTeacher(api_key="sk-right") as sim:
        ok = openai.OpenAI(base_url=sim.base_url, api_key="sk-right", max_retries=0)
        assert boxed(ok.chat.completions.create(model="m", messages=MSGS).choices[0].message.content) == ANSWER
        bad = openai.OpenAI(base_url=sim.base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model="m", messages=MSGS)
        body = info.value.body
        assert info.value.status_code == 401 and body["code"] == "invalid_api_key"
        assert "sk-wrong" not in str(body) and "sk-right" not in str(body)
        r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS})
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
        assert httpx.get(sim.url + "/health").status_code == 200  # health needs no key


def test_token_bucket_drives_headers_and_429():
    with SimTeacher(rpm=5, tpm=100_000) as sim:
        seen = []
        for _ in range(5):
            r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS})
            assert r.status_code == 200
            seen.append(int(r.headers["x-ratelimit-remaining-requests"]))
            assert r.headers["x-ratelimit-limit-requests"] == "5" and r.headers["x-ratelimit-limit-tokens"] == "100000"
        assert seen == [4, 3, 2, 1, 0]
        r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS})
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(r.headers["retry-after"]) <= 13 and 1 <= int(r.headers["retry-after-ms"]) <= 12_000
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        assert sim.stats()["rate_limited"] == {"requests": 1}
    with SimTeacher() as sim:
        cost = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS}).json()
        cost = cost["usage"]["total_tokens"]
    with SimTeacher(tpm=cost * 3 // 2) as sim:  # the second request must wait for tokens
        r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS})
        assert r.status_code == 200 and int(r.headers["x-ratelimit-remaining-tokens"]) == cost * 3 // 2 - cost
        r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS})
        assert r.status_code == 429 and sim.stats()["rate_limited"] == {"tokens": 1}
        assert 15 <= int(r.headers["retry-after"]) <= 21  # (cost - cost/2) tokens at (1.5 cost)/60 per second


def _port_free(port: int) -> bool:
    """Nothing listens on the port any more: a new server can bind it (as servers do, SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def test_clean_shutdown_leaks_no_threads_or_sockets():
    before = set(threading.enumerate())
    fds_before = len(os.listdir("/proc/self/fd"))
    with SimTeacher(rate_hang=1.0, latency=0.0) as sim:
        port = sim.port
        body = b'{"model":"m","messages":[{"role":"user","content":"1+1"}]}'
        hung = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for s in hung:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + 10
        while sim.stats()["in_flight"] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.stats()["faults"] == {"hang": 5}
    assert _port_free(port)
    for s in hung:
        assert s.recv(100) == b""  # the server closed the hung request
        s.close()
    assert set(threading.enumerate()) == before
    assert len(os.listdir("/proc/self/fd")) <= fds_before


async def test_same_loop_async_form():
    async with SimTeacher(seed=2) as sim, httpx.AsyncClient() as http:
        r = await http.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS})
        assert boxed(r.json()["choices"][0]["message"]["content"]) == ANSWER
        port = sim.port
    assert _port_free(port)


@pytest.mark.slow
def test_cli_process_prints_url_and_stops_on_sigterm(monkeypatch):
    monkeypatch.setenv("SIM_KEY_FOR_TEST", "sk-cli")
    with SimProcess(SimOptions(reasoning="think", api_key="sk-cli")) as sim:
        c = openai.OpenAI(base_url=sim.base_url, api_key="sk-cli", max_retries=0)
        assert boxed(c.chat.completions.create(model="m", messages=MSGS).choices[0].message.content) == ANSWER
        assert sim.stats()["routes"] == {"/v1/chat/completions": 1, "/stats": 1}
        proc = sim.proc
    assert proc.returncode == 0
    bad = subprocess.run(
        [sys.executable, "-m", "tracesynth", "sim-teacher", "--api-key-env", "NOT_SET_ANYWHERE"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "NOT_SET_ANYWHERE" in bad.stderr and "Traceback" not in bad.stderr


def test_wrong_rate_over_http_matches_reasoning_gym_answers():
    import reasoning_gym

    ds = reasoning_gym.create_dataset("chain_sum", size=300, seed=21)
    with SimTeacher(seed=4, wrong_rate=0.3) as sim, httpx.Client() as http:
        wrong = 0
        for entry in ds:
            r = http.post(
                sim.base_url + "/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": entry["question"]}]},
            )
            answer = boxed(r.json()["choices"][0]["message"]["content"])
            wrong += answer != entry["answer"]
            assert (ds.score_answer(answer, entry) == 1.0) == (answer == entry["answer"])
    assert abs(wrong - 90) < 32  # binomial(300, 0.3): sd ~ 7.9


def test_answer_key_and_unknown_problems_over_http(tmp_path):
    key = tmp_path / "key.jsonl"
    key.write_text('{"id": "cap", "question": "What is the capital of France?", "answer": "Paris"}\n')
    with SimTeacher(answer_key=key, reasoning="think") as sim:
        c = client(sim)
        r = c.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "What is the capital of France?\n\nPut the answer in \\boxed{}."}],
        )
        reasoning, answer = split("think", r.choices[0].message.model_dump())
        assert boxed(answer) == "Paris" and "Paris" in reasoning
        r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "Prove Fermat's last theorem."}])
        reasoning, answer = split("think", r.choices[0].message.model_dump())
        assert r.choices[0].finish_reason == "stop" and boxed(answer) is None and "cannot solve" in answer


def test_n_choices_stream_like_they_answer_and_seed_picks_the_sample():
    q = [{"role": "user", "content": "Calculate 47 * 68."}]
    with SimTeacher(wrong_rate=0.5, seed=0) as sim:
        c = client(sim)
        streamed: dict[int, str] = {}
        for chunk in c.chat.completions.create(model="m", messages=q, n=4, stream=True):
            for ch in chunk.choices:
                streamed[ch.index] = streamed.get(ch.index, "") + (ch.delta.content or "")
        full = c.chat.completions.create(model="m", messages=q, n=4)
        assert [streamed[i] for i in range(4)] == [ch.message.content for ch in full.choices]
        by_seed = {
            s: c.chat.completions.create(model="m", messages=q, seed=s).choices[0].message.content for s in range(8)
        }
        assert by_seed[3] == c.chat.completions.create(model="m", messages=q, seed=3).choices[0].message.content
        assert len(set(by_seed.values())) > 1 and any(boxed(v) == "3196" for v in by_seed.values())


def _read_responses(sock: socket.socket, n: int, timeout: float = 5.0) -> list[bytes]:
    """``n`` complete HTTP responses (Content-Length bodies) read from ``sock``."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < n:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(re.search(rb"content-length: (\d+)", buf[:head_end]).group(1))
            if len(buf) >= head_end + 4 + length:
                out.append(buf[head_end + 4 : head_end + 4 + length])
                buf = buf[head_end + 4 + length :]
                continue
        data = sock.recv(65536)
        if not data:
            break
        buf += data
    return out


def test_delayed_replies_keep_pipelined_order_and_free_the_slot_when_the_client_leaves():
    """Latency is served by a timer (no task per request): order, counters and early disconnects still hold."""
    with SimTeacher(latency=0.3) as sim:
        questions = ["Calculate 12 + 30.", "Calculate 7 * 6.", "Calculate 50 - 8."]
        reqs = b""
        for q in questions:
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": q}]}).encode()
            reqs += b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", sim.port)) as s:
            s.sendall(reqs)  # pipelined: answered one after another, in order
            bodies = _read_responses(s, 3)
        assert len(bodies) == 3 and time.monotonic() - t0 >= 0.85
        assert [re.search(rb"boxed\{(\d+)\}", b).group(1) for b in bodies] == [b"42", b"42", b"42"]
        assert [re.search(rb"evaluate ([^.]+)\.", b).group(1) for b in bodies] == [b"12 + 30", b"7 * 6", b"50 - 8"]
        leaving = socket.create_connection(("127.0.0.1", sim.port))
        leaving.sendall(reqs[: reqs.index(b"POST", 10)])
        deadline = time.monotonic() + 5
        while sim.stats()["in_flight"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.stats()["in_flight"] == 1
        leaving.close()  # before the reply is due
        while sim.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = sim.stats()
        assert stats["in_flight"] == 0 and stats["max_in_flight"] == 1 and stats["status"] == {"200": 3}
