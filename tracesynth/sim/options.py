"""SimOptions: every knob of the simulated teacher, as one pydantic model (the CLI flags mirror it).

Latency is a small spec string so one flag can say it: ``"0"`` / ``"0.2"`` / ``"fixed:0.2"``
(seconds), ``"uniform:LO:HI"``, or ``"lognormal:MEDIAN:SIGMA"`` (time to first token).
``token_delay_s`` adds a per-token delay on top (streamed chunk by chunk, or waited before a
non-streaming reply). Fault rates are independent probabilities per request, drawn in a fixed
order from a seeded generator; ``script`` forces the fault of the first requests in arrival order.

This module only declares and validates options; it starts nothing.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Placement = Literal["reasoning_content", "reasoning", "think", "r1_distill", "undelimited", "sky_t1"]
# where a provider reports usage (see tracesynth.sim.server): OpenAI's shape (reasoning tokens only in
# completion_tokens_details), DeepSeek's (prompt cache hit/miss at the top level), OpenAI's with prompt
# caching (prompt_tokens_details.cached_tokens), streams whose usage rides on the last choice chunk
# whether or not it was asked for, or no usage at all (some proxies and self-hosted servers)
UsageStyle = Literal["openai", "deepseek", "cached", "final_chunk", "none"]
# kinds of planted wrong answers (see tracesynth.sim.solver): a mistake inside one step carried to the
# answer (a dropped carry or borrow, a wrong column digit, a wrong partial product), or right work
# with the answer written with two digits swapped
MistakeKind = Literal["step", "transposed"]


def _only_step_mistakes() -> list[MistakeKind]:
    return ["step"]


FaultKind = Literal["ok", "429", "500", "502", "503", "hang", "drop_body", "drop_stream", "malformed", "empty_choices"]
# the order in which fault rates are drawn (part of the reproducibility contract)
FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "502",
    "503",
    "hang",
    "drop_body",
    "drop_stream",
    "malformed",
    "empty_choices",
)


class Latency(BaseModel):
    """A latency distribution in seconds; parsed from ``fixed:S``, ``uniform:LO:HI``, ``lognormal:MEDIAN:SIGMA``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    a: float = Field(0.0, ge=0)
    b: float = Field(0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if isinstance(v, (int, float)):
            return {"kind": "fixed", "a": float(v)}
        if isinstance(v, str):
            parts = v.strip().split(":")
            if len(parts) == 1:
                return {"kind": "fixed", "a": float(parts[0])}
            kind, nums = parts[0], [float(x) for x in parts[1:]]
            if kind == "fixed" and len(nums) == 1:
                return {"kind": kind, "a": nums[0]}
            if kind in ("uniform", "lognormal") and len(nums) == 2:
                return {"kind": kind, "a": nums[0], "b": nums[1]}
            raise ValueError(f"bad latency spec {v!r}: use S, fixed:S, uniform:LO:HI or lognormal:MEDIAN:SIGMA")
        return v

    @model_validator(mode="after")
    def _check(self) -> Latency:
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError("uniform latency needs LO <= HI")
        return self

    @property
    def zero(self) -> bool:
        return self.kind == "fixed" and self.a == 0.0

    def sample(self, rng: random.Random) -> float:
        """Draw one latency (seconds) from ``rng``."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return self.a * math.exp(rng.gauss(0.0, self.b)) if self.a > 0 else 0.0

    def __str__(self) -> str:
        return f"fixed:{self.a:g}" if self.kind == "fixed" else f"{self.kind}:{self.a:g}:{self.b:g}"


Rate = float


class SimOptions(BaseModel):
    """Options of the simulated teacher (Python keyword arguments and ``tracesynth sim-teacher`` flags)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind (loopback by default).")
    port: int = Field(0, ge=0, le=65535, description="Port to bind; 0 picks a free one.")
    model: str = Field("sim-reasoner", description="Model name listed by /v1/models.")
    strict_model: bool = Field(False, description="Reject (404) requests naming another model.")
    seed: int = Field(0, description="Seed of every random choice (answers, mistakes, faults, latency).")
    reasoning: Placement = Field(
        "reasoning_content",
        description="Where the reasoning goes: reasoning_content (DeepSeek-R1, vLLM's parser up to 0.10) | "
        "reasoning (vLLM >= 0.11, OpenRouter) | think (inline <think>) | r1_distill (content starts inside the "
        "reasoning, only a closing </think>: an R1-distill served without a reasoning parser) | undelimited "
        "(QwQ-32B-Preview: plain text, no delimiter, the boxed answer at the end) | sky_t1 "
        "(<|begin_of_thought|>...<|end_of_thought|> then <|begin_of_solution|>...<|end_of_solution|>).",
    )
    usage: UsageStyle = Field(
        "openai",
        description="Where usage is reported: openai (reasoning tokens in completion_tokens_details) | deepseek "
        "(plus prompt_cache_hit_tokens / prompt_cache_miss_tokens) | cached (prompt_tokens_details.cached_tokens) "
        "| final_chunk (streams: usage on the last choice chunk, asked for or not) | none (no usage object). "
        "Cached tokens: the messages before the last one, once an earlier request had the same ones.",
    )
    wrong_rate: float = Field(
        0.0, ge=0, le=1, description="Probability of a plausible mistake carried to a wrong answer."
    )
    wrong_rate_range: str | None = Field(
        None,
        description="LO:HI: each problem its own wrong rate, uniform in [LO, HI] and fixed by the problem (some "
        "easy, some hard), instead of wrong_rate; e.g. 0.05:0.95.",
    )
    mistakes: list[MistakeKind] = Field(
        default_factory=_only_step_mistakes,
        min_length=1,
        description="Kinds of wrong answers, equally likely: step (a mistake inside one step: a dropped carry "
        "or borrow, a wrong digit) | transposed (right work, two digits of the answer swapped).",
    )
    slip_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Probability of a slip in the middle of an arithmetic trace that the trace notices and "
        "corrects, so the final answer is right (outcome verification cannot see it); exclusive with a "
        "wrong answer, so wrong_rate + slip_rate <= 1.",
    )
    answer_key: Path | None = Field(
        None, description="JSONL of problems with reference answers, for non-arithmetic problems."
    )
    api_key: SecretStr | None = Field(None, description="Require 'Authorization: Bearer <key>' (401 otherwise).")
    latency: Latency = Field(
        default_factory=Latency, description="Time to first token: S | uniform:LO:HI | lognormal:MEDIAN:SIGMA."
    )
    token_delay_s: float = Field(0.0, ge=0, description="Extra delay per generated token (seconds).")
    stream_chunk_tokens: int = Field(4, ge=1, description="Tokens per streamed chunk.")
    rate_429: Rate = Field(0.0, ge=0, le=1, description="Probability of a 429 with Retry-After.")
    rate_500: Rate = Field(0.0, ge=0, le=1, description="Probability of a 500.")
    rate_502: Rate = Field(0.0, ge=0, le=1, description="Probability of a 502.")
    rate_503: Rate = Field(0.0, ge=0, le=1, description="Probability of a 503.")
    rate_hang: Rate = Field(0.0, ge=0, le=1, description="Probability that a request hangs until the client gives up.")
    rate_drop_body: Rate = Field(0.0, ge=0, le=1, description="Probability of dropping the connection mid-body.")
    rate_drop_stream: Rate = Field(0.0, ge=0, le=1, description="Probability of dropping a stream mid-way.")
    rate_malformed: Rate = Field(0.0, ge=0, le=1, description="Probability of a 200 with a malformed JSON body.")
    rate_empty_choices: Rate = Field(0.0, ge=0, le=1, description="Probability of a 200 with an empty choices list.")
    script: list[FaultKind] = Field(
        default_factory=list, description="Faults forced on the first requests in arrival order ('ok' = none)."
    )
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After of a random 429.")
    hang_s: float = Field(3600.0, gt=0, description="Longest a hanging request is held open.")
    rpm: int | None = Field(None, gt=0, description="Requests per minute (token bucket; 429 beyond it).")
    tpm: int | None = Field(None, gt=0, description="Tokens per minute (prompt + completion; 429 beyond it).")
    batch_delay_s: float = Field(
        1.0, ge=0, description="Batches API: seconds from batch creation until every request is processed."
    )
    batch_error_rate: Rate = Field(
        0.0, ge=0, le=1, description="Batches API: share of requests that end in the error file (HTTP 500)."
    )
    batch_expire_s: float | None = Field(
        None,
        gt=0,
        description="Batches API: a batch still running after this many seconds expires (requests "
        "done by then are in the output file, the rest in the error file as batch_expired).",
    )

    @field_validator("script", "mistakes", mode="before")
    @classmethod
    def _split_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @model_validator(mode="after")
    def _rates_sum(self) -> SimOptions:
        total = sum(self.fault_rates().values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:g} > 1")
        if self.wrong_rate + self.slip_rate > 1.0 + 1e-9:
            raise ValueError(f"wrong_rate + slip_rate = {self.wrong_rate + self.slip_rate:g} > 1")
        return self

    @field_validator("wrong_rate_range")
    @classmethod
    def _range(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            lo, hi = (float(x) for x in v.split(":"))
        except ValueError:
            raise ValueError(f"bad wrong_rate_range {v!r}: use LO:HI, e.g. 0.05:0.95") from None
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"wrong_rate_range {v!r}: needs 0 <= LO <= HI <= 1")
        return v

    @property
    def wrong_rate_bounds(self) -> tuple[float, float] | None:
        if self.wrong_rate_range is None:
            return None
        lo, hi = (float(x) for x in self.wrong_rate_range.split(":"))
        return lo, hi

    def fault_rates(self) -> dict[str, float]:
        """Fault kind -> probability, in the fixed draw order."""
        return {k: getattr(self, f"rate_{k}") for k in FAULT_KINDS}
