"""Personas of the simulated teacher: it answers as the recipes' real teachers do (where the reasoning
goes, where usage is reported), and the project's own parser reads every one of them back."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest

from tracesynth.sim import SimOptions, SimProcess, SimTeacher
from tracesynth.sim.runner import option_flags
from tracesynth.sim.tokens import count_chat_prompt
from tracesynth.teacher.parse import parse_chat, parse_usage
from tracesynth.thinking import reply_parts

Q = "Calculate 4782 + 395 - 18.\n\nPlease reason step by step, and put your final answer within \\boxed{}."
SYSTEM = {"role": "system", "content": "You are a helpful and harmless assistant. You should think step-by-step."}
MSGS = [SYSTEM, {"role": "user", "content": Q}]
STEP = "2+5+0=7, write 7, carry 0"  # a line of the simulator's column-by-column trace of Q


def boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^{}]*)\}", text)
    return found[-1] if found else None


def ask(sim: SimTeacher, messages: list[dict] = MSGS, **body) -> dict:
    r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": messages, **body}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


# (placement, how the parser finds the reasoning: a field, inline delimiters, or none at all)
PERSONAS = [
    ("reasoning_content", "field"),  # DeepSeek-R1 API, vLLM's parser up to 0.10
    ("reasoning", "field"),  # vLLM >= 0.11, OpenRouter
    ("r1_distill", "inline"),  # R1-distill without a reasoning parser: only the closing </think>
    ("sky_t1", "inline"),  # <|begin_of_thought|> ... <|begin_of_solution|> ...
    ("undelimited", "none"),  # QwQ-32B-Preview: plain text, boxed answer at the end
]


@pytest.mark.parametrize("placement, how", PERSONAS)
def test_every_persona_is_read_back_as_reasoning_and_final_answer(placement, how):
    with SimTeacher(reasoning=placement, seed=1) as sim:
        body = ask(sim)
    (choice,), usage, _ = parse_chat(body)
    reasoning, answer, undelimited = reply_parts(choice.reasoning, choice.content)
    assert STEP in reasoning and STEP not in answer
    assert boxed(answer) == "5159" and "boxed" not in reasoning.rsplit("\n", 1)[-1]
    assert not re.search(r"<\|?(begin|end)_of_|</?think>", reasoning + answer)  # no delimiter left in either
    assert undelimited == (how == "none") and (choice.reasoning is None) == (how == "none")
    # plain-text personas report no reasoning tokens, as a server without a reasoning parser would
    assert usage is not None and (usage.reasoning_tokens > 0) == (placement not in ("undelimited", "sky_t1"))


def test_usage_in_the_places_providers_put_it():
    usage = {}
    for style in ("openai", "cached", "deepseek", "none"):
        with SimTeacher(usage=style) as sim:
            first, second = ask(sim), ask(sim)  # the same system prompt twice: the second hits the cache
        usage[style] = (first.get("usage"), second.get("usage"))
    system_tokens = count_chat_prompt([SYSTEM])
    plain, again = usage["openai"]
    assert plain["completion_tokens_details"]["reasoning_tokens"] > 0
    assert "prompt_tokens_details" not in plain and "prompt_cache_hit_tokens" not in again
    assert parse_usage(again).cached_tokens == 0
    cold, warm = usage["cached"]
    assert (cold["prompt_tokens_details"]["cached_tokens"], warm["prompt_tokens_details"]["cached_tokens"]) == (
        0,
        system_tokens,
    )
    assert parse_usage(warm).cached_tokens == system_tokens > 0
    cold, warm = usage["deepseek"]
    assert warm["prompt_cache_hit_tokens"] == system_tokens
    assert warm["prompt_cache_hit_tokens"] + warm["prompt_cache_miss_tokens"] == warm["prompt_tokens"]
    assert parse_usage(warm).cached_tokens == system_tokens and parse_usage(cold).cached_tokens == 0
    assert usage["none"] == (None, None)  # no usage object at all: the ledger has to estimate


def test_usage_only_on_the_final_stream_chunk():
    def events(sim: SimTeacher, **body) -> list[dict]:
        with httpx.stream(
            "POST",
            sim.base_url + "/chat/completions",
            json={"model": "m", "messages": MSGS, "stream": True, **body},
            timeout=10,
        ) as r:
            lines = [x.removeprefix("data: ") for x in r.iter_lines() if x.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        return [json.loads(x) for x in lines[:-1]]

    with SimTeacher(usage="final_chunk") as sim:
        full = ask(sim)["usage"]
        for body in ({}, {"stream_options": {"include_usage": True}}):
            got = events(sim, **body)
            with_usage = [e for e in got if "usage" in e]
            assert with_usage == [got[-1]] and got[-1]["choices"][0]["finish_reason"] == "stop"
            assert got[-1]["usage"]["completion_tokens"] == full["completion_tokens"]
    with SimTeacher() as sim:  # OpenAI's way: a usage event with no choices, only when asked for
        assert not any("usage" in e for e in events(sim))
        last = events(sim, stream_options={"include_usage": True})[-1]
        assert last["choices"] == [] and last["usage"]["completion_tokens"] == full["completion_tokens"]


def test_persona_flags_follow_the_options():
    assert option_flags(SimOptions(reasoning="undelimited", usage="deepseek")) == [
        "--reasoning",
        "undelimited",
        "--usage",
        "deepseek",
    ]
    bad = subprocess.run(
        [sys.executable, "-m", "tracesynth", "sim-teacher", "--reasoning", "qwq"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--reasoning" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_serves_a_persona():
    with SimProcess(reasoning="undelimited", usage="deepseek") as sim:
        body = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS}, timeout=10).json()
    message = body["choices"][0]["message"]
    assert set(message) == {"role", "content"} and boxed(message["content"]) == "5159"
    assert "prompt_cache_hit_tokens" in body["usage"]


def test_the_audit_reads_a_reply_without_delimiters_as_it_is_trained():
    from tracesynth.sim.solver import Solver, audit

    solver = Solver(seed=0, wrong_rate=0.0)
    sol = solver.solve(Q, 0)
    with SimTeacher(reasoning="undelimited", seed=0) as sim:
        (choice,), _, _ = parse_chat(ask(sim, [{"role": "user", "content": Q}]))
    assert choice.reasoning is None and audit(sol.reasoning, sol.content) == "clean"
    assert audit(choice.reasoning, choice.content) == "clean"  # was "not_arithmetic": no reasoning to read
    wrong = choice.content.replace("\\boxed{5159}", "\\boxed{5160}")
    assert audit(None, wrong) != "clean"
