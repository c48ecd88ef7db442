"""Flow control for teacher requests: a concurrency cap that adapts (AIMD) and rate buckets.

* :class:`AdaptiveLimit` — at most ``limit`` requests in flight. A 429 halves the limit (at most
  once per ``cooldown_s``, so one burst of 429s counts once); every success adds one back, up to
  the configured concurrency, so the harvester returns to full speed as soon as pressure ends.
* :class:`TokenBucket` — requests per minute / per second, and tokens per minute (total, input and
  output separately: providers limit output tokens on their own, and output is what binds for long
  traces). A request takes its *estimated* cost up front (prompt estimate + max_tokens, the way
  providers count it); :meth:`FlowControl.release` corrects the buckets with the actual usage.
  A cost larger than the bucket is allowed once the bucket is full (it goes into debt), so large
  requests are paced, never starved.
* ``x-ratelimit-limit/remaining/reset-requests|tokens`` response headers lower the limits to what
  the server announces (never raise them above the recipe), and ``remaining: 0`` pauses until reset.

This module paces requests; it does not send them, retry them or count money.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass


class AdaptiveLimit:
    """A semaphore whose size moves between 1 and ``max_limit`` (multiplicative decrease, additive increase)."""

    def __init__(self, max_limit: int, *, adaptive: bool = True, decrease: float = 0.5, cooldown_s: float = 1.0):
        self.max_limit = max(1, int(max_limit))
        self.limit = float(self.max_limit)
        self.adaptive = adaptive
        self.decrease = decrease
        self.cooldown_s = cooldown_s
        self.in_use = 0
        self.decreases = 0
        self._last_decrease = -1e9
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, *, first: bool = False) -> None:
        """Take a slot, waiting in line when none is free; ``first`` goes to the front of the line."""
        if self.in_use < int(self.limit) and not self._waiters:
            self.in_use += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(fut)
        else:
            self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            elif fut in self._waiters:  # (_wake may already have dropped the cancelled future)
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < int(self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_use += 1
                fut.set_result(None)

    def on_overload(self) -> None:
        """A 429: back off multiplicatively (once per cooldown)."""
        now = time.monotonic()
        if self.adaptive and now - self._last_decrease >= self.cooldown_s:
            self.limit = max(1.0, self.limit * self.decrease)
            self._last_decrease = now
            self.decreases += 1

    def on_success(self) -> None:
        if self.limit < self.max_limit:
            self.limit = min(float(self.max_limit), self.limit + 1.0)
            self._wake()


class TokenBucket:
    """``rate`` units per second, bursts up to ``capacity``; the level may go negative (debt)."""

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else max(1.0, rate))
        self.level = self.capacity
        self._t = time.monotonic()
        self.paused_until = 0.0

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._t) * self.rate)
        self._t = now

    def wait_s(self, cost: float, now: float | None = None) -> float:
        """Seconds until ``cost`` may be taken (0 when it may be taken now)."""
        now = time.monotonic() if now is None else now
        self._refill(now)
        pause = self.paused_until - now
        need = min(cost, self.capacity) - self.level
        return max(pause, need / self.rate if need > 0 else 0.0, 0.0)

    def take(self, cost: float) -> None:
        self.level -= cost

    def refund(self, amount: float) -> None:
        """Give back ``amount`` (negative: charge more), e.g. estimate minus actual usage."""
        self.level = min(self.capacity, self.level + amount)

    def set_rate(self, rate: float, capacity: float | None = None) -> None:
        self._refill(time.monotonic())
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else max(1.0, rate))
        self.level = min(self.level, self.capacity)

    def pause(self, seconds: float) -> None:
        now = time.monotonic()
        self._refill(now)
        self.level = min(self.level, 0.0)
        self.paused_until = max(self.paused_until, now + seconds)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_reset(value: str | None) -> float | None:
    """``x-ratelimit-reset-*``: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"`` or plain seconds."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass(slots=True)
class Permit:
    """What one request took from the flow control (returned to :meth:`FlowControl.release`)."""

    est_in: float
    est_out: float


class FlowControl:
    """The concurrency limit plus every configured rate bucket, shared by all requests of a client."""

    def __init__(
        self,
        concurrency: int,
        *,
        rpm: float | None = None,
        rps: float | None = None,
        tpm: float | None = None,
        input_tpm: float | None = None,
        output_tpm: float | None = None,
        adaptive: bool = True,
    ) -> None:
        self.limit = AdaptiveLimit(concurrency, adaptive=adaptive)
        self.configured = {"rpm": rpm, "rps": rps, "tpm": tpm, "input_tpm": input_tpm, "output_tpm": output_tpm}
        self.buckets: dict[str, TokenBucket] = {}
        for name, value in self.configured.items():
            if value:
                self._set(name, float(value))
        self.learned: dict[str, float] = {}
        self._lock: asyncio.Lock | None = None

    def _set(self, name: str, per_unit: float) -> None:
        rate = per_unit if name == "rps" else per_unit / 60.0
        if name in self.buckets:
            self.buckets[name].set_rate(rate)
        else:
            self.buckets[name] = TokenBucket(rate)

    @property
    def concurrency(self) -> int:
        return int(self.limit.limit)

    @property
    def in_flight(self) -> int:
        return self.limit.in_use

    def _costs(self, est_in: float, est_out: float) -> dict[str, float]:
        return {"rpm": 1.0, "rps": 1.0, "tpm": est_in + est_out, "input_tpm": est_in, "output_tpm": est_out}

    async def acquire(self, est_in: float = 0.0, est_out: float = 0.0, *, retry: bool = False) -> Permit:
        """A permit to send one request; a ``retry`` (it already waited out its backoff) is served first."""
        await self.limit.acquire(first=retry)
        if self.buckets:
            try:
                await self._take(self._costs(est_in, est_out))
            except BaseException:
                self.limit.release()
                raise
        return Permit(est_in, est_out)

    async def _take(self, costs: dict[str, float]) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # first come, first served
            while True:
                wait = max(b.wait_s(costs[name]) for name, b in self.buckets.items())
                if wait <= 0:
                    for name, b in self.buckets.items():
                        b.take(costs[name])
                    return
                await asyncio.sleep(wait)

    def release(self, permit: Permit, actual_in: int | None = None, actual_out: int | None = None) -> None:
        """Free the slot; correct token buckets with actual usage (None: nothing was generated)."""
        self.limit.release()
        if not self.buckets:
            return
        a_in = permit.est_in if actual_in is None else actual_in
        a_out = 0.0 if actual_out is None else actual_out
        refunds = {
            "tpm": permit.est_in + permit.est_out - a_in - a_out,
            "input_tpm": permit.est_in - a_in,
            "output_tpm": permit.est_out - a_out,
        }
        for name, amount in refunds.items():
            if name in self.buckets:
                self.buckets[name].refund(amount)

    def on_rate_limited(self) -> None:
        self.limit.on_overload()

    def on_success(self) -> None:
        self.limit.on_success()

    def observe_headers(self, headers: Mapping[str, str] | None) -> None:
        """Learn limits from ``x-ratelimit-*`` headers (requests → rpm, tokens → tpm)."""
        if not headers:
            return
        for unit, name in (("requests", "rpm"), ("tokens", "tpm")):
            raw = headers.get(f"x-ratelimit-limit-{unit}")
            if raw is None:
                continue
            try:
                limit = float(raw)
            except ValueError:
                continue
            mine = self.configured.get(name)
            if limit > 0 and (mine is None or limit < mine) and self.learned.get(name) != limit:
                self.learned[name] = limit
                self._set(name, limit)
            remaining, reset = (
                headers.get(f"x-ratelimit-remaining-{unit}"),
                parse_reset(headers.get(f"x-ratelimit-reset-{unit}")),
            )
            if remaining is not None and reset and name in self.buckets:
                try:
                    if float(remaining) <= 0:
                        self.buckets[name].pause(reset)
                except ValueError:
                    continue

    def snapshot(self) -> dict[str, float]:
        return {
            "concurrency": self.concurrency,
            "in_flight": self.in_flight,
            "decreases": self.limit.decreases,
            **{f"learned_{k}": v for k, v in self.learned.items()},
        }
