"""Generation for evaluation, with s1's budget forcing, locally (transformers) or against an endpoint.

Budget forcing (Muennighoff et al., 2025, "s1: Simple test-time scaling"; the paper's "budget" is a
number of thinking tokens, which tracesynth calls a *thinking cap*: "budget" is money here):

* **cap** — at most ``thinking_cap`` tokens of thinking: when the cap is reached without the
  end-of-thinking delimiter, the delimiter is appended (plus ``answer_prefix``, s1 used
  "Final Answer:") and the model goes on to write its answer;
* **Wait-extension** — the first ``waits`` times the model stops thinking — it emits the end-of-thinking
  delimiter, or ends its turn inside its thinking — the stop is suppressed, ``wait_text`` ("Wait") is
  appended and the model keeps thinking (s1's lm-evaluation-harness appends "Wait" after any stop of the
  thinking phase but the token limit).

Both work in rounds: generate until a stop (end of thinking, end of turn, or a token limit), act,
continue from the new text. Locally the rounds are batched ``generate`` calls (left padding,
greedy or sampled); against an endpoint they are ``/v1/completions`` calls on the prompt rendered
client-side with the student's chat template. Without forcing, one round generates the whole turn.

Counted per generation: thinking tokens (generated up to and including the end of thinking; a
delimiter appended by forcing is not generated and not counted), answer tokens,
appended "Wait"s, whether the end of thinking was forced, and whether it stopped on its own
(end-of-turn) before ``max_new_tokens``. This module generates text; it does not score it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tracesynth.records import Usage
from tracesynth.thinking import THINK

THINK_START, THINK_END = THINK.start, THINK.end


@dataclass(frozen=True)
class GenerationSpec:
    """How to generate: the token limit, the thinking cap and Wait-extensions (budget forcing), sampling."""

    max_new_tokens: int = 512
    thinking_cap: int | None = None
    waits: int = 0
    think_start: str = THINK_START
    think_end: str = THINK_END
    wait_text: str = "Wait"
    answer_prefix: str = ""
    temperature: float = 0.0
    top_p: float = 1.0

    @property
    def forcing(self) -> bool:
        return self.thinking_cap is not None or self.waits > 0

    def describe(self) -> dict[str, Any]:
        return {"thinking_cap": self.thinking_cap, "waits": self.waits}


@dataclass
class Generation:
    """One generated answer and how it came about."""

    text: str = ""
    finish_reason: str = "stop"  # "stop": ended its turn; "length": hit max_new_tokens
    completion_tokens: int = 0
    thinking_tokens: int = 0
    answer_tokens: int = 0
    waits: int = 0
    forced: bool = False
    ended_thinking: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return self.finish_reason == "stop"

    def split(self, think_start: str = THINK_START, think_end: str = THINK_END) -> tuple[str | None, str]:
        """(reasoning, answer) of the text; reasoning None when there is no thinking block."""
        text = self.text
        if think_end in text:
            head, tail = text.split(think_end, 1)
            return head.split(think_start, 1)[-1].strip(), tail.strip()
        if text.lstrip().startswith(think_start):
            return text.split(think_start, 1)[1].strip(), ""
        return None, text.strip()


@dataclass
class _State:
    prompt: str
    gen: Generation = field(default_factory=Generation)
    phase: str = "think"
    waits_left: int = 0
    done: bool = False
    ids: list[int] = field(default_factory=list)  # local: generated + appended token ids


class LocalGenerator:
    """Batched generation with a transformers model (left padding; greedy when temperature is 0)."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 32, seed: int = 0, threads: int | None = None):
        self.model = model
        self.threads = threads
        self.start_id: int | None = None
        self.tok = tokenizer
        self.batch_size = batch_size
        self.seed = seed
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        eos = {self.tok.eos_token_id}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        self.eos_ids = sorted(i for i in eos if i is not None)

    def _single_id(self, text: str) -> int | None:
        ids = self.tok.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    def generate(self, prompts: list[str], spec: GenerationSpec) -> list[Generation]:
        from tracesynth.stages.train.device import cpu_threads

        # decoding a small model is a chain of tiny matmuls: one thread on a busy CPU (see cpu_threads)
        with cpu_threads(self.model, self.threads):
            return self._generate(prompts, spec)

    def _generate(self, prompts: list[str], spec: GenerationSpec) -> list[Generation]:
        import torch

        torch.manual_seed(self.seed)
        states = [_State(p, waits_left=spec.waits, phase="think" if spec.forcing else "answer") for p in prompts]
        prompt_ids = [self.tok.encode(p, add_special_tokens=False) for p in prompts]
        end_id = self._single_id(spec.think_end)
        self.start_id = self._single_id(spec.think_start)
        wait_ids = self.tok.encode(spec.wait_text, add_special_tokens=False)
        close_ids = self.tok.encode(
            spec.think_end + ("\n\n" + spec.answer_prefix if spec.answer_prefix else "\n\n"), add_special_tokens=False
        )
        if spec.forcing and end_id is None:
            raise ValueError(f"budget forcing needs {spec.think_end!r} to be one token of this tokenizer")
        while True:
            active = [i for i, s in enumerate(states) if not s.done]
            if not active:
                break
            for phase in ("think", "answer"):
                group = [i for i in active if states[i].phase == phase]
                for start in range(0, len(group), self.batch_size):
                    chunk = group[start : start + self.batch_size]
                    self._round(chunk, states, prompt_ids, spec, phase, end_id, wait_ids, close_ids)
        for s in states:
            s.gen.text = self.tok.decode(s.ids, skip_special_tokens=True)
            if not spec.forcing and end_id is not None and end_id in s.ids:  # split the counts after the fact
                k = s.ids.index(end_id) + 1  # thinking includes its closing delimiter
                s.gen.thinking_tokens, s.gen.answer_tokens = k, s.gen.completion_tokens - k
                s.gen.ended_thinking = True
        return [s.gen for s in states]

    def _allowance(self, s: _State, spec: GenerationSpec) -> int:
        left = spec.max_new_tokens - s.gen.completion_tokens
        if s.phase == "think" and spec.thinking_cap is not None:
            left = min(left, spec.thinking_cap - s.gen.thinking_tokens)
        return max(left, 0)

    def _round(self, chunk, states, prompt_ids, spec: GenerationSpec, phase, end_id, wait_ids, close_ids) -> None:
        import torch

        allow = {i: self._allowance(states[i], spec) for i in chunk}
        runnable = [i for i in chunk if allow[i] > 0]
        for i in chunk:
            if allow[i] <= 0:
                self._at_limit(states[i], spec, close_ids)
        if not runnable:
            return
        stop_ids = list(self.eos_ids) + ([end_id] if phase == "think" and end_id is not None else [])
        seqs = [prompt_ids[i] + states[i].ids for i in runnable]
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
        sampling: dict[str, Any] = {"do_sample": False}
        if spec.temperature > 0:
            sampling = {"do_sample": True, "temperature": spec.temperature, "top_p": spec.top_p}
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=mask.to(self.model.device),
                max_new_tokens=max(allow[i] for i in runnable),
                min_new_tokens=1,  # a continuation (after "Wait" or a forced end) writes at least one token
                eos_token_id=stop_ids,
                pad_token_id=pad,
                top_k=None,
                **sampling,
            )
        for row, i in enumerate(runnable):
            new = out[row, width:].tolist()
            cut = next((k + 1 for k, t in enumerate(new) if t in stop_ids), None)
            new = new[: cut if cut is not None else len(new)][: allow[i]]
            self._advance(states[i], new, spec, end_id, wait_ids, close_ids)

    def _advance(self, s: _State, new: list[int], spec: GenerationSpec, end_id, wait_ids, close_ids) -> None:
        g = s.gen
        g.completion_tokens += len(new)
        last = new[-1] if new else None
        if s.phase == "think":
            if last == end_id:
                if s.waits_left > 0:
                    s.ids += new[:-1] + wait_ids
                    s.waits_left -= 1
                    g.waits += 1
                    g.completion_tokens -= 1  # the suppressed delimiter is not part of the output
                    g.thinking_tokens += len(new) - 1
                else:
                    s.ids += new
                    g.thinking_tokens += len(new)  # the delimiter closes the thinking and counts in it
                    g.ended_thinking = True
                    s.phase = "answer"
                return
            if last in self.eos_ids:  # ended its turn while thinking, or never thought (an answers-only student)
                thought = self.start_id is not None and self.start_id in s.ids + new
                if thought and s.waits_left > 0:  # a stop inside the thinking: Wait, as for the delimiter
                    s.ids += new[:-1] + wait_ids
                    s.waits_left -= 1
                    g.waits += 1
                    g.completion_tokens -= 1  # the suppressed end of turn is not part of the output
                    g.thinking_tokens += len(new) - 1
                    return
                if thought:
                    g.thinking_tokens += len(new)
                else:
                    g.answer_tokens, g.thinking_tokens = g.completion_tokens, 0
                s.ids += new
                s.done, g.finish_reason = True, "stop"
                return
            g.thinking_tokens += len(new)
            s.ids += new
            self._at_limit(s, spec, close_ids)
            return
        g.answer_tokens += len(new)
        s.ids += new
        if last in self.eos_ids:
            s.done, g.finish_reason = True, "stop"
        elif g.completion_tokens >= spec.max_new_tokens:
            s.done, g.finish_reason = True, "length"

    def _at_limit(self, s: _State, spec: GenerationSpec, close_ids) -> None:
        g = s.gen
        if g.completion_tokens >= spec.max_new_tokens:
            s.done, g.finish_reason = True, "length"
        elif s.phase == "think":  # the thinking cap: force the end of thinking and ask for the answer
            s.ids += close_ids
            g.forced = g.ended_thinking = True
            s.phase = "answer"
        else:
            s.done, g.finish_reason = True, "length"


class EndpointGenerator:
    """Generation through an OpenAI-compatible endpoint with the harvester's :class:`TeacherClient`.

    Without forcing: ``/v1/chat/completions`` (the server applies its template; reasoning normalised
    from ``reasoning_content`` / ``reasoning`` / inline tags). With forcing: ``/v1/completions`` on
    the prompt rendered client-side, stopping on the end-of-thinking string; a ``stop`` finish while
    thinking (inside an opened thinking block) is taken as the end of thinking.

    With a ``tokenizer`` and a vLLM server (``token_ids``) the forcing rounds work on token ids, as local
    generation does: the prompt and what was generated so far go back as ids (never re-tokenized from
    text, which can split differently at the boundary), the end of thinking is a stop *token*, the
    appended delimiter and "Wait" are the same ids the local generator appends, and every round must
    generate at least one token (vLLM's ``min_tokens``). So a checkpoint forced through vLLM and through
    transformers takes the same steps.
    """

    def __init__(self, client: Any, *, seed: int | None = 0, tokenizer: Any = None, token_ids: bool = False):
        self.client = client
        self.seed = seed
        self.tok = tokenizer
        self.token_ids = token_ids and tokenizer is not None

    async def chat(
        self, conversations: list[list[dict[str, Any]]], spec: GenerationSpec, seeds: list[int | None] | None = None
    ) -> list[Generation]:
        seeds = seeds or [self.seed] * len(conversations)
        calls = (self._guard(self._chat_one(m, spec, s)) for m, s in zip(conversations, seeds, strict=True))
        return list(await asyncio.gather(*calls))

    @staticmethod
    async def _guard(call: Any) -> Generation:
        """An item the endpoint refused after its retries is an error row (counted as not passed), not a crash."""
        from tracesynth.teacher.retry import ItemError

        try:
            return await call
        except ItemError as exc:
            return Generation(finish_reason="error", meta={"error": str(exc), "error_kind": exc.kind})

    async def _chat_one(self, messages: list[dict[str, Any]], spec: GenerationSpec, seed: int | None) -> Generation:
        res = await self.client.chat(
            messages, max_tokens=spec.max_new_tokens, temperature=spec.temperature, top_p=spec.top_p, seed=seed
        )
        choice = res.choices[0]
        usage = res.usage or Usage()
        used, thinking = usage.completion_tokens, usage.reasoning_tokens
        text = choice.content
        if choice.reasoning is not None:
            text = f"{spec.think_start}\n{choice.reasoning}\n{spec.think_end}\n\n{choice.content}"
        return Generation(
            text=text,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            completion_tokens=used,
            thinking_tokens=thinking,
            answer_tokens=max(used - thinking, 0),
            ended_thinking=choice.reasoning is not None,
            meta={"flags": list(choice.flags)},
        )

    async def generate(
        self, prompts: list[str], spec: GenerationSpec, seeds: list[int | None] | None = None
    ) -> list[Generation]:
        seeds = seeds or [self.seed] * len(prompts)
        one = self._one_ids if self.token_ids else self._one
        calls = (self._guard(one(p, spec, s)) for p, s in zip(prompts, seeds, strict=True))
        return list(await asyncio.gather(*calls))

    async def _complete(
        self, prompt: str, max_tokens: int, stop: list[str] | None, spec: GenerationSpec, seed: int | None
    ) -> tuple[str, str | None, int]:
        res = await self.client.complete(
            prompt, max_tokens=max_tokens, stop=stop, temperature=spec.temperature, top_p=spec.top_p, seed=seed
        )
        choice = res.choices[0]
        return choice.content, choice.finish_reason, (res.usage or Usage()).completion_tokens

    async def _one_ids(self, prompt: str, spec: GenerationSpec, seed: int | None) -> Generation:
        """The forcing rounds on token ids (see the class docstring): the local generator's steps, served."""
        tok = self.tok
        prompt_ids = tok.encode(prompt, add_special_tokens=False)
        end_id = _single_id(tok, spec.think_end)
        if end_id is None:
            raise ValueError(f"budget forcing needs {spec.think_end!r} to be one token of this tokenizer")
        start_id = _single_id(tok, spec.think_start)
        wait_ids = tok.encode(spec.wait_text, add_special_tokens=False)
        close_ids = tok.encode(spec.think_end + "\n\n" + spec.answer_prefix, add_special_tokens=False)
        eos_ids = {tok.eos_token_id} if isinstance(tok.eos_token_id, int) else set()
        g, ids = Generation(), list[int]()
        waits_left = spec.waits
        phase = "think" if spec.forcing else "answer"
        while True:
            left = spec.max_new_tokens - g.completion_tokens
            if phase == "think" and spec.thinking_cap is not None:
                left = min(left, spec.thinking_cap - g.thinking_tokens)
            if left <= 0:
                if g.completion_tokens >= spec.max_new_tokens or phase == "answer":
                    g.finish_reason = "length"
                    break
                ids += close_ids  # the thinking cap: force the end of thinking and ask for the answer
                g.forced = g.ended_thinking = True
                phase = "answer"
                continue
            extra: dict[str, Any] = {"return_token_ids": True, "min_tokens": 1}
            if phase == "think":
                extra["stop_token_ids"] = [end_id]
            res = await self.client.complete(
                prompt_ids + ids, max_tokens=left, temperature=spec.temperature, top_p=spec.top_p, seed=seed, **extra
            )
            choice = res.choices[0]
            new = list(choice.token_ids or [])[:left]
            g.completion_tokens += len(new)
            last = new[-1] if new else None
            if phase == "answer":
                g.answer_tokens += len(new)
                ids += new
                g.finish_reason = "length" if choice.finish_reason == "length" else "stop"
                break
            if last == end_id:
                if waits_left > 0:  # suppress the end of thinking and keep going
                    ids += new[:-1] + wait_ids
                    waits_left -= 1
                    g.waits += 1
                    g.completion_tokens -= 1  # the suppressed delimiter is not part of the output
                    g.thinking_tokens += len(new) - 1
                else:
                    ids += new
                    g.thinking_tokens += len(new)  # the delimiter closes the thinking and counts in it
                    g.ended_thinking = True
                    phase = "answer"
                continue
            if choice.finish_reason == "stop":  # ended its turn while thinking, or never thought
                thought = start_id is not None and start_id in ids + new
                if thought and waits_left > 0:  # a stop inside the thinking: Wait, as for the delimiter
                    ended = 1 if new and new[-1] in eos_ids else 0
                    ids += new[: len(new) - ended] + wait_ids
                    waits_left -= 1
                    g.waits += 1
                    g.completion_tokens -= ended
                    g.thinking_tokens += len(new) - ended
                    continue
                if thought:
                    g.thinking_tokens += len(new)
                else:
                    g.answer_tokens, g.thinking_tokens = g.completion_tokens, 0
                ids += new
                g.finish_reason = "stop"
                break
            g.thinking_tokens += len(new)
            ids += new
            # cut by a limit: the next round forces the end of thinking or stops at max_new_tokens
        g.text = tok.decode(ids, skip_special_tokens=True)
        return g

    async def _one(self, prompt: str, spec: GenerationSpec, seed: int | None) -> Generation:
        g = Generation()
        text = ""
        waits_left = spec.waits
        phase = "think" if spec.forcing else "answer"
        while True:
            left = spec.max_new_tokens - g.completion_tokens
            if phase == "think" and spec.thinking_cap is not None:
                left = min(left, spec.thinking_cap - g.thinking_tokens)
            if left <= 0:
                if g.completion_tokens >= spec.max_new_tokens or phase == "answer":
                    g.finish_reason = "length"
                    break
                text += spec.think_end + "\n\n" + spec.answer_prefix  # the thinking cap: force the end
                g.forced = g.ended_thinking = True
                phase = "answer"
                continue
            stop = [spec.think_end] if phase == "think" else None
            piece, finish, used = await self._complete(prompt + text, left, stop, spec, seed)
            g.completion_tokens += used
            if phase == "answer":
                g.answer_tokens += used
                text += piece
                g.finish_reason = "length" if finish == "length" else "stop"
                break
            g.thinking_tokens += used
            hit_end = finish == "stop" or spec.think_end in piece
            piece = piece.split(spec.think_end, 1)[0]  # servers that return the stop string
            if hit_end and spec.think_start in (prompt + text + piece):
                if waits_left > 0:  # suppress the end of thinking and keep going
                    text += piece + spec.wait_text
                    waits_left -= 1
                    g.waits += 1
                else:
                    text += piece + spec.think_end
                    g.ended_thinking = True
                    phase = "answer"
                continue
            text += piece
            if finish == "stop":  # ended its turn without a thinking block
                g.finish_reason = "stop"
                break
            # cut by a limit: the next round forces the end of thinking or stops at max_new_tokens
        g.text = text
        return g


def _single_id(tok: Any, text: str) -> int | None:
    ids = tok.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


__all__ = ["THINK_END", "THINK_START", "EndpointGenerator", "Generation", "GenerationSpec", "LocalGenerator"]
