"""The hostile teacher itself: each mode sends what it claims, so a chaos failure is tracesynth's, not the harness's."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from hostile import CHAT_MARKUP, Hostile, solve

pytestmark = pytest.mark.chaos


def _post(url: str, body: dict, timeout: float = 5.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _ask(h: Hostile, question: str = "What is 12 + 30?", **extra) -> tuple[int, dict]:
    body = {"model": "hostile", "messages": [{"role": "user", "content": question}], "max_tokens": 100, **extra}
    return _post(h.base_url + "/chat/completions", body)


def test_hostile_answers_arithmetic_and_refuses_like_a_real_server():
    assert solve("What is 12 + 30?") == 42 and solve("What is 7 - 9?") == -2
    with Hostile(script=["no_usage", "finish_reason_int", "content_int", "chat_markup"]) as h:
        status, body = _ask(h)
        assert status == 200 and "usage" not in body
        assert _ask(h)[1]["choices"][0]["finish_reason"] == 7
        assert _ask(h)[1]["choices"][0]["message"]["content"] == 5
        assert CHAT_MARKUP in _ask(h)[1]["choices"][0]["message"]["content"]
        status, body = _ask(h)
        msg = body["choices"][0]["message"]
        assert status == 200 and "\\boxed{42}" in msg["content"] and msg["reasoning_content"]
        assert body["usage"]["completion_tokens"] > 0
        with urllib.request.urlopen(h.base_url + "/models", timeout=5) as resp:
            assert [m["id"] for m in json.loads(resp.read())["data"]] == ["hostile"]
        status, body = _post(h.base_url + "/chat/completions", {"model": "x", "messages": []})
        assert status == 404 and body["error"]["message"] == "The model `x` does not exist."
        assert _ask(h, max_tokens=0)[0] == 400
        status, body = _ask(h, temperature=-3)
        assert status == 400 and body["type"] == "BadRequestError" and "temperature" in body["message"]
        assert _post(h.url + "/chat/completions", {"model": "hostile", "messages": []})[0] == 404
        assert h.count() == 8 and h.count("mode:ok") == 1 and h.count("rejected:no_v1") == 1


@pytest.mark.parametrize(
    ("mode", "field", "value"),
    [
        ("negative_usage", "completion_tokens", -1_000_000),
        ("absurd_usage", "completion_tokens", 10**9),
        ("string_usage", "completion_tokens", "abc"),
    ],
)
def test_hostile_usage_modes(mode, field, value):
    with Hostile(mode=mode) as h:
        assert _ask(h)[1]["usage"][field] == value


def test_hostile_hangs_only_the_first_time_a_question_is_asked():
    with Hostile(mode="hang_first", hang_s=5) as h:
        with pytest.raises(TimeoutError):
            _post(
                h.base_url + "/chat/completions",
                {"model": "hostile", "max_tokens": 10, "messages": [{"role": "user", "content": "What is 1 + 2?"}]},
                timeout=0.3,
            )
        assert _ask(h, question="What is 1 + 2?")[0] == 200
        assert h.count("hung") == 1 and h.count() == 2
