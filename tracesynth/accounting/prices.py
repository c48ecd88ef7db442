"""Token prices: the shipped table (each row dated, with its source), the cost of a call, batch prices.

Prices are USD per million tokens: input (cache miss), cached input (cache hit), output, and
reasoning (defaults to output — every provider below bills reasoning as output). A recipe's
``teacher.prices`` overrides the shipped :data:`PRICE_TABLE`. A model in neither:

* served at a provider's URL (:data:`PROVIDER_HOSTS`) has no known price, and a budget is refused
  (a cap that cannot be computed is not a cap);
* served anywhere else (your own vLLM / SGLang box, a local server) is *self-hosted*: its tokens
  cost $0 here (the GPU-hours are yours), with a note saying so.

Batch prices: ``teacher.prices.batch_discount`` (:class:`~tracesynth.config.PricesConfig`, default 0.5)
off every token class — only for providers with a batch API (a table row's ``batch``; recipe prices
at a host of :data:`NO_BATCH_HOSTS` get none either).

This module does arithmetic; it makes no requests and writes no files.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from tracesynth.config import PricesConfig
from tracesynth.errors import ConfigError
from tracesynth.records import Usage

DEFAULT_BATCH_DISCOUNT: float = PricesConfig.model_fields["batch_discount"].default


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens, and where the numbers come from."""

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None
    source: str = "recipe"
    as_of: str = ""  # the date the source was read (YYYY-MM-DD)
    batch: bool = True  # the provider has a batch API at the discount
    self_hosted: bool = False

    def cost(self, usage: Usage) -> float:
        prompt, completion = max(usage.prompt_tokens, 0), max(usage.completion_tokens, 0)
        cached = min(max(usage.cached_tokens, 0), prompt)
        reasoning = min(max(usage.reasoning_tokens, 0), completion)
        cached_price = self.input if self.cached_input is None else self.cached_input
        reasoning_price = self.output if self.reasoning is None else self.reasoning
        return (
            (prompt - cached) * self.input
            + cached * cached_price
            + (completion - reasoning) * self.output
            + reasoning * reasoning_price
        ) / 1e6

    def worst_case(self, prompt_tokens: float, output_tokens: float) -> float:
        out = max(self.output, self.reasoning or 0.0)
        return (prompt_tokens * self.input + output_tokens * out) / 1e6

    def as_dict(self) -> dict[str, object]:
        return {
            "input": self.input,
            "output": self.output,
            "cached_input": self.cached_input,
            "reasoning": self.reasoning,
            "source": self.source,
            "as_of": self.as_of,
            "batch": self.batch,
            "self_hosted": self.self_hosted,
        }


def _row(i: float, o: float, cached: float | None, source: str, as_of: str, *, batch: bool) -> Prices:
    return Prices(i, o, cached_input=cached, source=source, as_of=as_of, batch=batch)


# Shipped prices (USD / 1M tokens): each row says where its numbers come from and when they were read.
# Providers change prices and retire names: check before a large run, or set teacher.prices.
PRICE_TABLE: dict[str, Prices] = {
    # DeepSeek-R1 (0528) where it is still served. The official API has not served R1 since 2025-08-21
    # (deepseek-reasoner became V3.1, V3.2, then an alias of V4-Flash, and the name was retired on
    # 2026-07-24); OpenRouter routes R1 to several hosts and has no batch API; Together serves the full
    # weights and has a batch API.
    "deepseek/deepseek-r1": _row(0.70, 2.50, None, "openrouter.ai/deepseek/deepseek-r1", "2026-12-04", batch=False),
    "deepseek-ai/deepseek-r1": _row(
        3.00, 7.00, None, "together.ai pricing (deepseek-ai/DeepSeek-R1)", "2026-12-04", batch=True
    ),
    # api-docs.deepseek.com/quick_start/pricing; DeepSeek has no batch API (and only n=1).
    "deepseek-v4-flash": _row(
        0.14, 0.28, 0.0028, "api-docs.deepseek.com/quick_start/pricing", "2026-04-26", batch=False
    ),
    "deepseek-v4-pro": _row(
        0.435, 0.87, 0.003625, "api-docs.deepseek.com/quick_start/pricing", "2026-04-26", batch=False
    ),
    # openai.com/api/pricing; the Batch API is half price; reasoning tokens are billed as output.
    "o3-mini": _row(1.10, 4.40, 0.55, "openai.com/api/pricing", "2025-04-16", batch=True),
    "o4-mini": _row(1.10, 4.40, 0.275, "openai.com/api/pricing", "2025-04-16", batch=True),
    "gpt-4o-mini": _row(0.15, 0.60, 0.075, "openai.com/api/pricing", "2025-04-16", batch=True),
    # anthropic.com/pricing (Claude 3.7 Sonnet): extended-thinking tokens are billed as output.
    "claude-3-7-sonnet": _row(3.00, 15.00, 0.30, "anthropic.com/pricing", "2025-02-24", batch=True),
    # QwQ-32B (the 2025-03 release; QwQ-32B-Preview has no priced host: self-host it)
    "qwen/qwq-32b": _row(0.15, 0.40, None, "openrouter.ai/qwen/qwq-32b", "2026-12-04", batch=False),
    "qwen-qwq-32b": _row(0.29, 0.39, None, "groq.com/pricing (qwen-qwq-32b)", "2025-03-10", batch=True),
}
_ALIASES = {
    "deepseek-r1": "deepseek/deepseek-r1",
    "deepseek-r1-0528": "deepseek/deepseek-r1",
    "deepseek/deepseek-r1-0528": "deepseek/deepseek-r1",
    "qwq-32b": "qwen/qwq-32b",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet",
}
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")

# hosts whose models are paid per token: an unknown model there has no price, never $0
PROVIDER_HOSTS = (
    "api.openai.com",
    "api.deepseek.com",
    "openrouter.ai",
    "api.together.xyz",
    "api.together.ai",
    "api.fireworks.ai",
    "api.groq.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "api.mistral.ai",
    "api.deepinfra.com",
    "api.hyperbolic.xyz",
    "api.novita.ai",
    "api.x.ai",
    "dashscope.aliyuncs.com",
    "dashscope-intl.aliyuncs.com",
    "api.sambanova.ai",
    "api.cerebras.ai",
    "inference.baseten.co",
    "router.huggingface.co",
    "api-inference.huggingface.co",
    "models.inference.ai.azure.com",
)


# provider hosts with no batch API: DeepSeek's API documents none (and only n=1); OpenRouter routes single
# requests to many hosts and has none. A batch price is never shown for them, recipe prices included.
NO_BATCH_HOSTS = ("api.deepseek.com", "openrouter.ai")


def lookup(model: str) -> Prices | None:
    """The shipped price of ``model`` (case-insensitive; dated snapshots and aliases resolved)."""
    name = model.strip().lower()
    for candidate in (name, _DATE_SUFFIX.sub("", name)):
        candidate = _ALIASES.get(candidate, candidate)
        if candidate in PRICE_TABLE:
            return PRICE_TABLE[candidate]
    return None


def _on(url: str, hosts: tuple[str, ...]) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in hosts)


def is_provider_url(url: str) -> bool:
    return _on(url, PROVIDER_HOSTS)


def has_no_batch_api(url: str) -> bool:
    """Whether ``url`` is a provider known to have no batch API (:data:`NO_BATCH_HOSTS`)."""
    return _on(url, NO_BATCH_HOSTS)


def is_local_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_private or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prices_for(model: str, override: PricesConfig | None = None, base_urls: list[str] | None = None) -> Prices | None:
    """Recipe prices when given, else the shipped table, else self-hosted ($0) off provider URLs, else None."""
    urls = base_urls or []
    if override is not None:
        batch = not any(has_no_batch_api(u) for u in urls)
        return Prices(
            override.input, override.output, override.cached_input, override.reasoning, source="recipe", batch=batch
        )
    known = lookup(model)
    if known is not None:
        return replace(known, batch=False) if any(has_no_batch_api(u) for u in urls) else known
    if urls and not any(is_provider_url(u) for u in urls):
        where = ", ".join(urls)
        return Prices(
            0.0,
            0.0,
            source=f"self-hosted: {model!r} at {where} is not a priced provider model; its "
            f"tokens cost $0 here (set teacher.prices to charge them)",
            batch=False,
            self_hosted=True,
        )
    return None


def require_prices(
    model: str,
    override: PricesConfig | None,
    budget_usd: float | None,
    base_urls: list[str] | None = None,
    *,
    field: str = "teacher",
) -> Prices | None:
    """:func:`prices_for`, refusing a budget that cannot be computed (one line naming the fix)."""
    prices = prices_for(model, override, base_urls)
    if prices is None and budget_usd is not None:
        raise ConfigError(
            f"{field}.budget_usd: no price known for model {model!r} at {', '.join(base_urls or []) or 'its endpoint'};"
            f" set {field}.prices (USD per million tokens: input, output, cached_input, reasoning)"
        )
    return prices


def batch_discount(override: PricesConfig | None) -> float:
    return override.batch_discount if override is not None else DEFAULT_BATCH_DISCOUNT


def batch_prices(prices: Prices | None, discount: float) -> Prices | None:
    """``prices`` x (1 - discount) on every token class (batch APIs discount input and output alike)."""
    if prices is None:
        return None
    f = 1.0 - discount

    def scale(v: float | None) -> float | None:
        return None if v is None else v * f

    return replace(
        prices,
        input=prices.input * f,
        output=prices.output * f,
        cached_input=scale(prices.cached_input),
        reasoning=scale(prices.reasoning),
        source=f"{prices.source}, batch -{discount:.0%}",
    )


__all__ = [
    "DEFAULT_BATCH_DISCOUNT",
    "NO_BATCH_HOSTS",
    "PRICE_TABLE",
    "PROVIDER_HOSTS",
    "Prices",
    "batch_discount",
    "batch_prices",
    "has_no_batch_api",
    "is_local_url",
    "is_provider_url",
    "lookup",
    "prices_for",
    "require_prices",
]
