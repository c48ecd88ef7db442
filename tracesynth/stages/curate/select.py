"""Which traces survive per problem, and s1-style selection of problems to a target size.

* :func:`pick_per_problem`: keep ``k`` samples of a problem — the shortest, the longest, or a
  seeded random ``k``.
* :func:`difficulty_reason`: s1 / LIMO difficulty signals — drop a problem a weak model solved
  (a ``pass`` verdict from ``select.weak_verifier`` on any of its samples), or whose pass count
  (or rate) over the teacher's samples is outside ``select.pass_count`` / ``select.pass_rate``.
* :func:`s1_select`: diversity sampling as in s1's data/filter.ipynb — first every problem a
  ``select.preselect`` rule names (s1: verified AIME and GPQA questions, verified MATH questions with
  a trace over 5,600 tokens), then draws: pick a domain uniformly at random (after
  ``select.benchmark_after`` problems, s1's 700, with the domain mix of ``select.benchmark_mix``
  instead, s1's AIME + half-weighted GPQA), then a problem of that domain with probability
  proportional to 2^(−rank), rank 0 being the longest trace left in the domain; remove it and repeat
  until ``size`` problems are chosen or none are left. As in s1 the preselected problems stay in the
  domain pools (a draw that lands on one only removes it) and are all kept even beyond ``size``.
  The rank draw is a truncated geometric(1/2), so each pick costs O(1) plus a list removal.
  Seeded; the same inputs and seed give the same selection. ``diversity: false`` samples
  uniformly instead.

Domain labels come from the problem (``domain`` or ``metadata.<key>``) or from a run harvested
with the ``classify_domain`` template (:func:`labels_from_run`). This module does not read
samples or verdicts itself except in :func:`labels_from_run`.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tracesynth.config import SelectConfig
from tracesynth.config.schema import PreselectRule
from tracesynth.errors import ConfigError
from tracesynth.records import Problem, Sample

T = TypeVar("T")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass
class Candidate:
    """A problem still in the running, with the signals selection uses."""

    problem_id: str
    domain: str
    length: int  # tokens of its (longest kept) trace: the s1 difficulty proxy
    passes: int = 0
    samples: int = 0
    source: str = ""  # metadata.source_type or Problem.source (preselect rules and the benchmark mix)


def pick_per_problem(items: Sequence[T], k: int, how: str, length: Any, rng: random.Random) -> list[T]:
    """``k`` of ``items`` by ``how`` (shortest | longest | random); ``length(item)`` gives its size."""
    if len(items) <= k:
        return list(items)
    if how == "shortest":
        return sorted(items, key=length)[:k]
    if how == "longest":
        return sorted(items, key=length, reverse=True)[:k]
    return rng.sample(list(items), k)


def difficulty_reason(c: Candidate, cfg: SelectConfig, weak_solved: set[str]) -> str | None:
    """Why difficulty filtering drops a candidate (``weak_solved``, ``pass_count``, ``pass_rate``) or None."""
    if (cfg.weak_verifier or cfg.weak_runs or cfg.weak_models) and c.problem_id in weak_solved:
        return "weak_solved"
    if cfg.pass_count is not None and not cfg.pass_count[0] <= c.passes <= cfg.pass_count[1]:
        return "pass_count"
    if cfg.pass_rate is not None:
        rate = c.passes / c.samples if c.samples else 0.0
        if not cfg.pass_rate[0] <= rate <= cfg.pass_rate[1]:
            return "pass_rate"
    return None


def _matches(c: Candidate, key: str) -> bool:
    return key.lower() in c.source.lower()


def preselected(cands: Sequence[Candidate], rules: Sequence[PreselectRule]) -> list[Candidate]:
    """The candidates some rule names (source substring, a passing sample, a trace longer than min_tokens)."""
    return [
        c
        for c in cands
        if any(
            _matches(c, r.source)
            and (c.passes > 0 or not r.passing)
            and (r.min_tokens is None or c.length > r.min_tokens)
            for r in rules
        )
    ]


def benchmark_weights(cands: Sequence[Candidate], mix: dict[str, float]) -> dict[str, float]:
    """Domain weights of s1's second phase: sum over sources of share x (its problems in the domain / its total)."""
    weights: dict[str, float] = defaultdict(float)
    for key, share in mix.items():
        mine = [c for c in cands if _matches(c, key)]
        for c in mine:
            weights[c.domain] += share / len(mine)
    return {d: w for d, w in weights.items() if w > 0}


def s1_select(
    cands: Sequence[Candidate],
    size: int,
    seed: int,
    *,
    diversity: bool = True,
    preselect: Sequence[PreselectRule] = (),
    benchmark_after: int | None = None,
    benchmark_mix: dict[str, float] | None = None,
) -> list[Candidate]:
    """Choose ``size`` candidates (see module docstring)."""
    rng = random.Random(f"select:{seed}")
    chosen = preselected(cands, preselect)
    taken = {c.problem_id for c in chosen}
    if len(cands) <= size:
        return list(cands)
    if not diversity:
        rest = [c for c in cands if c.problem_id not in taken]
        return chosen + rng.sample(rest, max(0, min(len(rest), size - len(chosen))))
    by_domain: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        by_domain[c.domain].append(c)
    pools = {d: sorted(cs, key=lambda c: (-c.length, c.problem_id)) for d, cs in sorted(by_domain.items())}
    domains = list(pools)
    bench = benchmark_weights(cands, benchmark_mix or {}) if benchmark_after is not None else {}
    while len(chosen) < size and domains:
        live = (
            [d for d in bench if d in pools] if benchmark_after is not None and len(chosen) >= benchmark_after else []
        )
        d = rng.choices(live, weights=[bench[x] for x in live])[0] if live else rng.choice(domains)
        pool = pools[d]
        pick = pool.pop(_geometric_rank(rng, len(pool)))
        if pick.problem_id not in taken:
            taken.add(pick.problem_id)
            chosen.append(pick)
        if not pool:
            domains.remove(d)
            del pools[d]
    return chosen


def _geometric_rank(rng: random.Random, n: int) -> int:
    """A rank in [0, n) with P(rank = i) proportional to 2^-i."""
    while True:
        i = 0
        while rng.random() < 0.5:
            i += 1
        if i < n:
            return i


def domain_of(problem: Problem, key: str, labels: dict[str, str] | None) -> str:
    if labels is not None:
        return labels.get(problem.id, "unknown")
    if key == "domain":
        return problem.domain or "unknown"
    if key.startswith("metadata."):
        value: Any = problem.metadata
        for part in key.split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        return "unknown" if value in (None, "") else str(value)
    raise ConfigError(f"curate.select.domain_key: {key!r} must be 'domain' or 'metadata.<key>'")


def labels_from_run(run_dir: str | Path) -> dict[str, str]:
    """Domain labels a teacher gave with the ``classify_domain`` template: ``{problem id: label}``.

    The label is the last ``\\boxed{}`` of the answer, else its last non-empty line, lowercased.
    """
    from tracesynth.rundir.store import JsonlFile

    path = Path(run_dir) / "samples.jsonl"
    if not path.is_file():
        raise ConfigError(f"curate.select.domain_from_run: {path}: no samples (harvest the labels first)")
    labels: dict[str, str] = {}
    for s in JsonlFile(path, Sample, key=None).iter():
        text = (s.content or "").strip()
        boxed = _BOXED.findall(text)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        label = boxed[-1] if boxed else (lines[-1] if lines else "")
        if label and s.problem_id not in labels:
            labels[s.problem_id] = label.strip().strip(".").lower()
    return labels


__all__ = [
    "Candidate",
    "benchmark_weights",
    "difficulty_reason",
    "domain_of",
    "labels_from_run",
    "pick_per_problem",
    "preselected",
    "s1_select",
]
