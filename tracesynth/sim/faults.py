"""Deliberate misbehaviour: which fault a request gets, how long it waits, and the rate limiter.

Fault choice is seeded and independent of arrival order *between different requests*: the k-th
arrival of a given request body draws from ``Random(hash(seed, body, k))`` — so a retried request
gets a fresh draw (and can succeed), while a re-run of the same workload sees the same faults.
One uniform number picks at most one fault, using the rates in the fixed order of
:data:`~tracesynth.sim.options.FAULT_KINDS`; then the latency is drawn from the same generator.
``script`` overrides this for the first requests in global arrival order (for exact tests).

The token bucket limits requests and tokens per minute the way hosted APIs do, and produces the
``x-ratelimit-*`` headers and the 429 ``Retry-After`` / ``retry-after-ms`` a client can learn from.
This module does not write HTTP; the server turns its decisions into responses.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass

from tracesynth.sim.options import SimOptions

MAX_TRACKED = 1_000_000  # distinct bodies remembered for retry counting (then forgotten wholesale)


@dataclass(frozen=True)
class Decision:
    fault: str  # "ok" or a fault kind
    latency_s: float
    rng: random.Random | None


class FaultPlan:
    """Decides the fault and latency of each request (see module docstring)."""

    def __init__(self, options: SimOptions) -> None:
        self.opts = options
        self.rates = list(options.fault_rates().items())
        self.any_fault = any(r > 0 for _, r in self.rates)
        self.script = list(options.script)
        self.arrivals = 0
        self.attempts: dict[bytes, int] = {}
        self.random_latency = options.latency.kind != "fixed"

    def decide(self, body: bytes) -> Decision:
        self.arrivals += 1
        scripted = self.script[self.arrivals - 1] if self.arrivals <= len(self.script) else None
        if not self.any_fault and not self.random_latency and scripted is None:
            return Decision("ok", self.opts.latency.a, None)
        digest = hashlib.blake2b(body, digest_size=8).digest()
        if len(self.attempts) >= MAX_TRACKED:
            self.attempts.clear()
        k = self.attempts.get(digest, 0) + 1
        self.attempts[digest] = k
        rng = random.Random(
            int.from_bytes(
                hashlib.blake2b(digest + k.to_bytes(4, "big") + str(self.opts.seed).encode(), digest_size=8).digest(),
                "big",
            )
        )
        u = rng.random()
        fault = "ok"
        acc = 0.0
        for kind, rate in self.rates:
            acc += rate
            if u < acc:
                fault = kind
                break
        if scripted is not None:
            fault = scripted
        return Decision(fault, self.opts.latency.sample(rng), rng)


def fmt_reset(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    m, s = divmod(math.ceil(seconds), 60)
    return f"{m}m{s}s"


class Bucket:
    """A token bucket holding up to ``per_minute``, refilled continuously at per_minute/60 per second."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.clock = clock
        self.t = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now; inf if it never fits)."""
        self._refill()
        if amount <= self.level:
            return 0.0
        if amount > self.capacity:
            return math.inf
        return (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def reset_s(self) -> float:
        return (self.capacity - self.level) / self.rate if self.rate else 0.0


class RateLimiter:
    """Requests- and tokens-per-minute buckets; admits or refuses a request of a given token cost."""

    def __init__(self, rpm: int | None, tpm: int | None, clock=time.monotonic) -> None:
        self.requests = Bucket(rpm, clock) if rpm else None
        self.tokens = Bucket(tpm, clock) if tpm else None

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def admit(self, cost: int) -> tuple[float, str]:
        """(0, "") if admitted and charged; else (seconds to wait, which limit: "requests" | "tokens")."""
        if self.requests is not None:
            wait = self.requests.wait_for(1)
            if wait > 0:
                return wait, "requests"
        if self.tokens is not None:
            wait = self.tokens.wait_for(cost)
            if wait > 0:
                return wait, "tokens"
        if self.requests is not None:
            self.requests.take(1)
        if self.tokens is not None:
            self.tokens.take(cost)
        return 0.0, ""

    def headers(self) -> list[tuple[str, str]]:
        out = []
        for name, b in (("requests", self.requests), ("tokens", self.tokens)):
            if b is not None:
                b._refill()
                out += [
                    (f"x-ratelimit-limit-{name}", str(int(b.capacity))),
                    (f"x-ratelimit-remaining-{name}", str(max(0, int(b.level)))),
                    (f"x-ratelimit-reset-{name}", fmt_reset(b.reset_s())),
                ]
        return out
