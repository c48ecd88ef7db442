"""Several base URLs serving one model: pick the least-loaded healthy one, bench one that keeps failing.

An endpoint is *benched* after ``bench_after`` consecutive endpoint faults (connection errors,
timeouts, 5xx — not 429, which is pacing, not sickness) for ``bench_s`` seconds, doubling on each
bench up to ``bench_max_s``; a success clears its record. When every endpoint is benched the one
whose bench ends first is used anyway, so a run never stalls on its own bookkeeping. With a
single endpoint nothing is benched (there is nowhere else to go).

This module keeps counts; it sends nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class Endpoint:
    url: str
    in_flight: int = 0
    consecutive_failures: int = 0
    benched_until: float = 0.0
    benches: int = 0  # how often it was benched (reported)
    bench_level: int = 0  # doubling exponent, cleared by a success
    requests: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"url": self.url, "requests": self.requests, "failures": self.failures, "benches": self.benches}


class EndpointPool:
    def __init__(self, urls: list[str], *, bench_after: int = 5, bench_s: float = 30.0, bench_max_s: float = 600.0):
        if not urls:
            raise ValueError("at least one base URL is needed")
        self.endpoints = [Endpoint(u.rstrip("/")) for u in urls]
        self.bench_after = bench_after
        self.bench_s = bench_s
        self.bench_max_s = bench_max_s

    def pick(self) -> Endpoint:
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        now = time.monotonic()
        healthy = [e for e in self.endpoints if e.benched_until <= now]
        if healthy:
            return min(healthy, key=lambda e: e.in_flight)
        return min(self.endpoints, key=lambda e: e.benched_until)

    def ok(self, ep: Endpoint) -> None:
        ep.consecutive_failures = 0
        ep.bench_level = 0

    def fail(self, ep: Endpoint) -> None:
        ep.failures += 1
        ep.consecutive_failures += 1
        if len(self.endpoints) > 1 and ep.consecutive_failures >= self.bench_after:
            ep.benched_until = time.monotonic() + min(self.bench_max_s, self.bench_s * 2**ep.bench_level)
            ep.bench_level += 1
            ep.benches += 1
            ep.consecutive_failures = 0

    def benched(self) -> list[str]:
        now = time.monotonic()
        return [e.url for e in self.endpoints if e.benched_until > now]
