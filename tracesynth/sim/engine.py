"""From a request to generated choices: placement of the reasoning, stop strings, max_tokens cuts.

A choice is a list of *pieces* — ``(field, text, is_reasoning)`` where field is ``content``,
``reasoning_content``, ``reasoning`` or ``text`` — in the order a model would emit them:

* ``reasoning_content`` / ``reasoning``: the reasoning in that field, the answer in content;
* ``think``: content ``<think>\\n`` + reasoning + ``\\n</think>\\n\\n`` + answer;
* ``r1_distill``: content = reasoning + ``\\n</think>\\n\\n`` + answer (the template opened the tag);
* ``undelimited``: content = reasoning + ``\\n\\n`` + answer, no delimiter at all (QwQ-32B-Preview);
* ``sky_t1``: content = ``<|begin_of_thought|>`` block of the reasoning, then a ``<|begin_of_solution|>``
  block of the answer (Sky-T1 / Bespoke-Stratos training format);
* completions: one ``text`` piece continuing the prompt (see :func:`continuation`).

Stop strings cut the concatenated output at their first occurrence (finish_reason ``stop``);
then ``max_tokens`` keeps whole pieces while they fit and cuts the first that does not, so
``completion_tokens <= max_tokens`` exactly (finish_reason ``length``). Token counts use
:mod:`tracesynth.sim.tokens`. No HTTP or JSON here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tracesynth.sim import tasks
from tracesynth.sim.solver import Solution, Solver, user_text_of_prompt
from tracesynth.sim.tokens import count_tokens, cut_after_tokens
from tracesynth.thinking import SOLUTION, THINK, THOUGHT

OPEN, CLOSE = THINK.start + "\n", "\n" + THINK.end + "\n\n"
_WAIT_END = re.compile(r"\bwait\W{0,3}$", re.I)
_WAIT = re.compile(r"\bwait\b", re.I)


@dataclass
class Choice:
    pieces: list[tuple[str, str, bool]]
    finish_reason: str = "stop"
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    solution: Solution | None = None
    fields: dict[str, str] = field(default_factory=dict)


def chat_pieces(sol: Solution, placement: str) -> list[tuple[str, str, bool]]:
    if placement in ("reasoning_content", "reasoning"):
        return [(placement, sol.reasoning, True), ("content", sol.content, False)]
    if placement == "think":
        return [("content", OPEN, False), ("content", sol.reasoning, True), ("content", CLOSE + sol.content, False)]
    # served without a reasoning parser, the server cannot tell thinking from answer: no reasoning tokens
    if placement == "undelimited":
        return [("content", sol.reasoning + "\n\n" + sol.content, False)]
    if placement == "sky_t1":
        thought = f"{THOUGHT.start}\n\n{sol.reasoning}\n\n{THOUGHT.end}\n\n"
        return [("content", thought, False), ("content", f"{SOLUTION.start}\n\n{sol.content}\n\n{SOLUTION.end}", False)]
    return [("content", sol.reasoning, True), ("content", CLOSE + sol.content, False)]


def continuation(sol: Solution, prompt: str) -> str:
    """What follows ``prompt`` (budget forcing: a prompt ending in 'Wait' re-checks and answers)."""
    if THINK.start not in prompt:
        return OPEN + sol.reasoning + CLOSE + sol.content
    after = prompt.rsplit(THINK.start, 1)[1]
    if THINK.end in after:
        tail = after.rsplit(THINK.end, 1)[1]
        return "" if sol.content in tail else ("" if tail.endswith("\n\n") else "\n\n") + sol.content
    thought = after.lstrip()
    if _WAIT_END.search(thought.rstrip()):
        more, content = sol.continue_after_wait(len(_WAIT.findall(thought)))
        return more + CLOSE + content
    if thought and sol.reasoning.startswith(thought):
        return sol.reasoning[len(thought) :] + CLOSE + sol.content
    return ("" if after.endswith("\n") else "\n") + sol.reasoning + CLOSE + sol.content


def finish(pieces: list[tuple[str, str, bool]], max_tokens: int | None, stop: list[str]) -> Choice:
    """Apply stop strings and the token budget; count tokens."""
    finish_reason = "stop"
    if stop:
        full = "".join(t for _, t, _ in pieces)
        hits = [i for i in (full.find(s) for s in stop if s) if i >= 0]
        if hits:
            pieces = _cut_chars(pieces, min(hits))
    out: list[tuple[str, str, bool]] = []
    budget = max_tokens if max_tokens is not None else -1
    used = reasoning = 0
    for name, text, is_r in pieces:
        n = count_tokens(text)
        if budget >= 0 and used + n > budget:
            text = cut_after_tokens(text, budget - used)
            n = budget - used
            finish_reason = "length"
        out.append((name, text, is_r))
        used += n
        reasoning += n if is_r else 0
        if finish_reason == "length":
            break
    choice = Choice(out, finish_reason, used, reasoning)
    for name, text, _ in out:
        choice.fields[name] = choice.fields.get(name, "") + text
    return choice


def _cut_chars(pieces: list[tuple[str, str, bool]], at: int) -> list[tuple[str, str, bool]]:
    out, pos = [], 0
    for name, text, is_r in pieces:
        if pos + len(text) >= at:
            out.append((name, text[: at - pos], is_r))
            return out
        out.append((name, text, is_r))
        pos += len(text)
    return out


def variant(request_seed: object, index: int, temperature: float | None) -> tuple[object, int]:
    """The sampling identity of a choice: temperature 0 makes every choice the same."""
    return (request_seed, 0 if temperature == 0 else index)


def chat_choices(
    solver: Solver,
    text: str,
    placement: str,
    n: int,
    max_tokens: int | None,
    stop: list[str],
    seed: object,
    temperature: float | None,
) -> list[Choice]:
    task = tasks.reply(text)  # a rewrite / classify prompt of the model passes: answered as a plain model would
    if task is not None:
        return [finish([("content", task, False)], max_tokens, stop) for _ in range(n)]
    out = []
    for i in range(n):
        sol = solver.solve(text, variant(seed, i, temperature))
        c = finish(chat_pieces(sol, placement), max_tokens, stop)
        c.solution = sol
        out.append(c)
    return out


def completion_choices(
    solver: Solver,
    prompt: str,
    n: int,
    max_tokens: int | None,
    stop: list[str],
    seed: object,
    temperature: float | None,
) -> list[Choice]:
    user = user_text_of_prompt(prompt)
    out = []
    for i in range(n):
        sol = solver.solve(user, variant(seed, i, temperature))
        c = finish([("text", continuation(sol, prompt), False)], max_tokens, stop)
        c.solution = sol
        out.append(c)
    return out
