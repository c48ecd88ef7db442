"""The wall time an ideal client needs when a share of requests get a 429 with Retry-After (a model).

Used by ``bench/harvest.py --scenario 429`` to put the measured run beside what no client can beat.
The model client costs nothing: no CPU, no start-up, no network time; ``concurrency`` slots; a
request takes ``latency`` seconds, or comes back at once as a 429 with probability ``rate_429``
(each attempt drawn independently, as the simulated teacher does); a 429'd call gives up its slot,
sleeps exactly Retry-After plus the same jitter our client adds (up to 10% of it, at most 0.25 s),
and is then served before any first attempt. Its walls over many random draws give the floor for
the issue's "at most 1.5x the fault-free wall time" target.

Not here: measuring anything (this is arithmetic on a discrete-event model), or any HTTP.

    .venv/bin/python bench/retry_after_floor.py   # prints the floor for the bench's 429 scenario
"""

from __future__ import annotations

import heapq
import random
import statistics


def ideal_wall(n: int, concurrency: int, latency: float, rate_429: float, retry_after: float, seed: int) -> float:
    """Seconds until the last of ``n`` requests succeeds, for one random draw of the 429s."""
    rng = random.Random(seed)
    jitter = min(0.25, retry_after * 0.1)
    events: list[tuple[float, int, int]] = []  # (time, kind: 0 done / 1 rate-limited / 2 wakes up, tie-break)
    free, started, ready, seq, last = concurrency, 0, 0, 0, 0.0  # ready: retries whose Retry-After is over

    def fill(now: float) -> None:
        nonlocal free, started, ready, seq
        while free and (ready or started < n):
            if ready:
                ready -= 1
            else:
                started += 1
            free -= 1
            seq += 1
            limited = rng.random() < rate_429
            heapq.heappush(events, (now if limited else now + latency, 1 if limited else 0, seq))

    fill(0.0)
    while events:
        now, kind, _ = heapq.heappop(events)
        if kind == 0:
            free += 1
            last = now
        elif kind == 1:
            free += 1
            seq += 1
            heapq.heappush(events, (now + retry_after + rng.uniform(0.0, jitter), 2, seq))
        else:
            ready += 1
        fill(now)
    return last


def floor(
    n: int = 4000,
    concurrency: int = 256,
    latency: float = 0.2,
    rate_429: float = 0.1,
    retry_after: float = 1.0,
    draws: int = 200,
) -> dict[str, float]:
    """The ideal client's wall with 429s over ``draws`` random draws, and its ratio to its fault-free wall."""
    clean = ideal_wall(n, concurrency, latency, 0.0, 0.0, 0)  # ceil(n / concurrency) waves of latency
    walls = sorted(ideal_wall(n, concurrency, latency, rate_429, retry_after, seed) for seed in range(draws))
    ratios = [w / clean for w in walls]
    return {
        "clean": clean,
        "median": statistics.median(walls),
        "ratio_median": statistics.median(ratios),
        "ratio_p10": ratios[len(ratios) // 10],
        "ratio_p90": ratios[(9 * len(ratios)) // 10],
        "share_within_1_5": sum(r <= 1.5 for r in ratios) / len(ratios),
    }


if __name__ == "__main__":
    f = floor()
    print(
        f"ideal client, 4,000 requests, 256 slots, 200 ms, 10% 429 + Retry-After 1 s, 200 draws: "
        f"fault-free {f['clean']:.2f}s; with 429s median {f['median']:.2f}s = x{f['ratio_median']:.2f} "
        f"(p10 x{f['ratio_p10']:.2f}, p90 x{f['ratio_p90']:.2f}); draws within 1.5x: {f['share_within_1_5']:.0%}"
    )
