"""What an eval measures: accuracy statistics (Wilson and bootstrap intervals, unbiased pass@k) and the
blocks of eval.json (per model, per domain / subject / level, and per thinking cap).

* :func:`wilson_interval` — the score interval for a binomial proportion (one sample per problem).
* :func:`bootstrap_interval` — a seeded percentile bootstrap over problems of the mean per-problem
  pass rate (several samples per problem are not independent draws, so resample problems).
* :func:`pass_at_k` — the unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k).

Pure Python, no numpy; this module computes numbers, it does not read or write files or generate.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``trials`` ((0, 1) when there are no trials)."""
    if trials <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} not in [0, {trials}]")
    z = _z(confidence)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return (lo, hi)


def bootstrap_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (per-problem pass rates)."""
    n = len(values)
    if n == 0:
        return (0.0, 1.0)
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    alpha = (1 - confidence) / 2
    lo = means[math.floor(alpha * (resamples - 1))]
    hi = means[math.ceil((1 - alpha) * (resamples - 1))]
    return (lo, hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct out of ``n`` samples (needs k <= n)."""
    if not 0 <= c <= n:
        raise ValueError(f"c={c} not in [0, n={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} not in [1, n={n}]")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean unbiased pass@k over problems given ``(n, c)`` per problem."""
    if not counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def accuracy_summary(counts: Sequence[tuple[int, int]], confidence: float = 0.95, seed: int = 0) -> dict[str, object]:
    """pass@1 (mean over problems of c/n) with its interval, and pass@k for k = 2, 4, ... <= min n.

    The interval is Wilson's when every problem has one sample, else a bootstrap over problems.
    """
    problems = len(counts)
    samples = sum(n for n, _ in counts)
    correct = sum(c for _, c in counts)
    rates = [c / n for n, c in counts if n > 0]
    p1 = sum(rates) / len(rates) if rates else 0.0
    if counts and all(n == 1 for n, _ in counts):
        lo, hi = wilson_interval(correct, problems, confidence)
        method = "wilson"
    else:
        lo, hi = bootstrap_interval(rates, confidence, seed=seed)
        method = "bootstrap"
    out: dict[str, object] = {
        "problems": problems,
        "samples": samples,
        "correct": correct,
        "pass@1": p1,
        "ci": [lo, hi],
        "ci_method": method,
        "confidence": confidence,
    }
    min_n = min((n for n, _ in counts), default=0)
    k = 2
    while k <= min_n:
        out[f"pass@{k}"] = mean_pass_at_k(counts, k)
        k *= 2
    if min_n > 1 and f"pass@{min_n}" not in out:
        out[f"pass@{min_n}"] = mean_pass_at_k(counts, min_n)
    return out


def group(rows: list[dict[str, Any]], key: str, confidence: float, seed: int) -> dict[str, Any]:
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in rows:
        value = r.get(key)
        if value is None:
            continue
        c = counts[str(value)][r["problem_id"]]
        c[0] += 1
        c[1] += int(r["passed"])
    out = {}
    for value, per in sorted(counts.items()):
        s = accuracy_summary([(x[0], x[1]) for x in per.values()], confidence, seed)
        out[value] = {"pass@1": s["pass@1"], "ci": s["ci"], "n_problems": s["problems"]}
    return out


def metrics(rows: list[dict[str, Any]], confidence: float, seed: int) -> dict[str, Any]:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        per[r["problem_id"]][0] += 1
        per[r["problem_id"]][1] += int(r["passed"])
    summary = accuracy_summary([(v[0], v[1]) for v in per.values()], confidence, seed)
    total = max(len(rows), 1)
    tags = Counter(v.get("tag") or v.get("status") for r in rows for v in r["verdicts"] if v.get("status") != "pass")
    return {
        **summary,
        "n_problems": summary["problems"],
        "stop_rate": sum(r["finish_reason"] == "stop" for r in rows) / total,
        "finish_reasons": dict(Counter(r["finish_reason"] for r in rows)),
        "mean_completion_tokens": sum(r["completion_tokens"] for r in rows) / total,
        "mean_thinking_tokens": sum(r["thinking_tokens"] for r in rows) / total,
        "forced_rate": sum(bool(r["forced"]) for r in rows) / total,
        "mean_waits": sum(r["waits"] for r in rows) / total,
        "non_pass_tags": dict(tags),
    }


def block(
    target: Any,
    protocol: dict[str, Any],
    rows_by_setting: dict[Any, list[dict[str, Any]]],
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    (_, plain_rows), *rest = rows_by_setting.items()
    out: dict[str, Any] = {
        "label": target.label,
        "model": target.name,
        "protocol": protocol,
        **metrics(plain_rows, confidence, seed),
    }
    for key in ("domain", "subject", "level", "source"):
        groups = group(plain_rows, key, confidence, seed)
        if groups and (key != "source" or len(groups) > 1):  # one set: the whole block is that set
            out[f"by_{key}"] = groups
    caps = []
    for (mode, spec), rows in rest:
        m = metrics(rows, confidence, seed)
        caps.append(
            {
                "mode": mode,
                "thinking_cap": spec.thinking_cap,
                "waits": spec.waits,
                # the x-axis of s1's figure: a cap row plots at its cap, a Wait row at its mean thinking length
                "thinking_tokens": spec.thinking_cap if mode == "cap" else round(m["mean_thinking_tokens"]),
                **{
                    k: m[k]
                    for k in (
                        "pass@1",
                        "ci",
                        "n_problems",
                        "stop_rate",
                        "mean_thinking_tokens",
                        "mean_completion_tokens",
                        "forced_rate",
                        "mean_waits",
                    )
                },
            }
        )
    if caps:
        out["thinking_caps"] = caps
    return out


__all__ = [
    "accuracy_summary",
    "block",
    "bootstrap_interval",
    "group",
    "mean_pass_at_k",
    "metrics",
    "pass_at_k",
    "wilson_interval",
]
