"""Token prices, the cost of a call, and the run's ledger with its budget cap.

Prices are USD per million tokens: input (cache miss), cached input (cache hit), output, and
reasoning (defaults to output — every provider below bills reasoning as output). A recipe's
``teacher.prices`` overrides the shipped :data:`PRICE_TABLE`; a model in neither has no price,
and then ``teacher.budget_usd`` is refused (a cap that cannot be computed is not a cap).

The budget rule (:class:`Ledger`): a request may start only if
``spent + possibly_billed + reserved_in_flight + its_worst_case <= budget``, where the worst case
is the prompt estimate at the input price plus ``max_tokens`` per choice at the highest output
price. So spend never exceeds the cap unless a server bills more than it was asked for.
A request that timed out, or whose 200 body was lost or malformed, may still have been billed:
its worst case is kept in ``possibly_billed_usd`` and counts against the budget.

This module does arithmetic; it makes no requests and writes no files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tracesynth.config import PricesConfig
from tracesynth.errors import ConfigError
from tracesynth.records import Usage

DEFAULT_WORST_OUTPUT_TOKENS = 32_768  # worst case assumed per choice when max_tokens is not set


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None
    source: str = "recipe"

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        reasoning_price = self.output if self.reasoning is None else self.reasoning
        return (
            (usage.prompt_tokens - cached) * self.input
            + cached * cached_price
            + (usage.completion_tokens - reasoning) * self.output
            + reasoning * reasoning_price
        ) / 1e6

    def worst_case(self, prompt_tokens: float, output_tokens: float) -> float:
        out = max(self.output, self.reasoning or 0.0)
        return (prompt_tokens * self.input + output_tokens * out) / 1e6


# Shipped prices (USD / 1M tokens). Each line says where the numbers come from and when they were
# read; providers change prices — override with `teacher.prices` when in doubt.
PRICE_TABLE: dict[str, Prices] = {
    # api-docs.deepseek.com/quick_start/pricing (USD table, DeepSeek-R1 / V3 rates as listed 2025-02):
    # cache hit / cache miss / output; CoT tokens are billed as output.
    "deepseek-reasoner": Prices(0.55, 2.19, cached_input=0.14, source="api-docs.deepseek.com pricing, 2025-02"),
    "deepseek-chat": Prices(0.27, 1.10, cached_input=0.07, source="api-docs.deepseek.com pricing, 2025-02"),
    # openai.com/api/pricing as listed 2025-04 (o4-mini launch); reasoning tokens are billed as output.
    "o3-mini": Prices(1.10, 4.40, cached_input=0.55, source="openai.com/api/pricing, 2025-04"),
    "o4-mini": Prices(1.10, 4.40, cached_input=0.275, source="openai.com/api/pricing, 2025-04"),
    "gpt-4o-mini": Prices(0.15, 0.60, cached_input=0.075, source="openai.com/api/pricing, 2025-04"),
    # anthropic.com/pricing (Claude 3.7 Sonnet, 2025-02): $3 in, $15 out, $0.30 prompt-cache read;
    # extended-thinking tokens are billed as output. Reached through OpenAI-compatible gateways.
    "claude-3-7-sonnet": Prices(3.00, 15.00, cached_input=0.30, source="anthropic.com/pricing, 2025-02"),
    # QwQ-32B on common hosts (provider pages as listed 2025-03; verify before a large run):
    "qwen-qwq-32b": Prices(0.29, 0.39, source="groq.com/pricing (qwen-qwq-32b), 2025-03"),
    "qwen/qwq-32b": Prices(1.20, 1.20, source="together.ai/pricing (Qwen/QwQ-32B), 2025-03"),
}
_ALIASES = {"deepseek-r1": "deepseek-reasoner", "deepseek-v3": "deepseek-chat", "qwq-32b": "qwen/qwq-32b",
            "claude-3-7-sonnet-latest": "claude-3-7-sonnet"}
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def lookup(model: str) -> Prices | None:
    """The shipped price of ``model`` (case-insensitive; dated snapshots and aliases resolved)."""
    name = model.strip().lower()
    for candidate in (name, _DATE_SUFFIX.sub("", name)):
        candidate = _ALIASES.get(candidate, candidate)
        if candidate in PRICE_TABLE:
            return PRICE_TABLE[candidate]
    return None


def prices_for(model: str, override: PricesConfig | None = None) -> Prices | None:
    """Recipe prices when given, else the shipped table, else None (unknown)."""
    if override is not None:
        return Prices(override.input, override.output, override.cached_input, override.reasoning, source="recipe")
    return lookup(model)


def require_prices(model: str, override: PricesConfig | None, budget_usd: float | None) -> Prices | None:
    prices = prices_for(model, override)
    if prices is None and budget_usd is not None:
        raise ConfigError(
            f"teacher.budget_usd: no price known for model {model!r}; set teacher.prices "
            f"(USD per million tokens: input, output, cached_input, reasoning)"
        )
    return prices


@dataclass
class Ledger:
    """Money spent by a run, money reserved by requests in flight, and the cap."""

    budget_usd: float | None = None
    spent_usd: float = 0.0
    possibly_billed_usd: float = 0.0
    reserved_usd: float = 0.0
    truncated_usd: float = 0.0  # part of spent_usd: answers cut at max_tokens
    failed_usd: float = 0.0  # part of spent_usd: billed calls that ended in an item error
    retried_usd: float = 0.0  # part of spent_usd: re-asks of truncated samples (--retry-truncated)
    tokens: dict[str, int] = field(
        default_factory=lambda: {"prompt": 0, "completion": 0, "reasoning": 0, "cached": 0})
    refused: int = 0

    def committed(self) -> float:
        return self.spent_usd + self.possibly_billed_usd + self.reserved_usd

    def try_reserve(self, worst_usd: float) -> bool:
        """Reserve a request's worst case; False (and nothing reserved) if it could break the cap."""
        if self.budget_usd is not None and self.committed() + worst_usd > self.budget_usd + 1e-12:
            self.refused += 1
            return False
        self.reserved_usd += worst_usd
        return True

    def release(self, reserved_usd: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)

    def charge(self, usage: Usage, cost_usd: float, *, truncated: bool = False, failed: bool = False,
               retried: bool = False) -> None:
        self.spent_usd += cost_usd
        if truncated:
            self.truncated_usd += cost_usd
        if failed:
            self.failed_usd += cost_usd
        if retried:
            self.retried_usd += cost_usd
        t = self.tokens
        t["prompt"] += usage.prompt_tokens
        t["completion"] += usage.completion_tokens
        t["reasoning"] += usage.reasoning_tokens
        t["cached"] += usage.cached_tokens

    def possibly_billed(self, usd: float) -> None:
        self.possibly_billed_usd += usd

    def spend_line(self) -> str:
        """Spend by kind and reasoning vs answer tokens, for progress lines."""
        t = self.tokens
        return (f"truncated ${self.truncated_usd:.4f}, failed ${self.failed_usd + self.possibly_billed_usd:.4f} "
                f"(possibly billed), retried ${self.retried_usd:.4f}; tokens: reasoning {t['reasoning']:,}, "
                f"answer {t['completion'] - t['reasoning']:,}")

    @property
    def exhausted(self) -> bool:
        return self.refused > 0

    def summary(self) -> dict[str, object]:
        return {
            "budget_usd": self.budget_usd,
            "spent_usd": round(self.spent_usd, 6),
            "possibly_billed_usd": round(self.possibly_billed_usd, 6),
            "truncated_usd": round(self.truncated_usd, 6),
            "failed_usd": round(self.failed_usd, 6),
            "retried_usd": round(self.retried_usd, 6),
            # reasoning tokens are part of completion; "answer" is the rest of it
            "tokens": {**self.tokens, "answer": self.tokens["completion"] - self.tokens["reasoning"]},
        }
