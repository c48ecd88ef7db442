"""Students trained with several seeds: what each group of runs measured, with intervals that hold.

A variant named ``<student>-s<k>`` is seed ``k`` of ``<student>`` (the pipeline's convention); a
group is every seed of one student. For each group this module reads, per seed, the student's
``train.json`` (steps, training tokens, parameters, supervised tokens per example), its loss curve
(``log_history`` of the last checkpoint's ``trainer_state.json``, when the run saved one) and every
evaluation of its eval.json (``after`` — the recipe's protocol — and ``models.<label>``, e.g. the
greedy one), per problem from ``eval_items.jsonl``.

Intervals: a group's accuracy is the mean over its seeds; its 95% interval is Student's t over the
seeds (k − 1 degrees of freedom) of the standard error that adds the seed-to-seed variance of the
seed means and the problem-level variance (the held-out problems are a sample too):
``mean ± t · sqrt(s²_seeds / k + s²_problems / P)``. A margin between two groups is computed the
same way on the per-seed, per-problem differences (seed i of one group against seed i of the
other, on the problems both answered). With one seed there is no seed variance to measure: the
interval is the problem-level normal one and says so.

Pure Python; reads files, computes these summaries, writes nothing.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

SEED_NAME = re.compile(r"^(?P<group>.+)-s(?P<seed>\d+)$")
# Student's t, two-sided 95%, by degrees of freedom (1..30); beyond, the normal 1.96
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131]
_T95 += [2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (normal for df > 30 or df < 1)."""
    if 1 <= df <= len(_T95):
        return _T95[df - 1]
    return NormalDist().inv_cdf(0.975)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def eval_label(block: dict[str, Any], label: str) -> str:
    """A column name for an evaluation: ``greedy`` at temperature 0, ``sampled T=…`` otherwise."""
    proto = block.get("protocol") or {}
    temp, n = proto.get("temperature"), proto.get("n")
    if temp == 0:
        return "greedy"
    if temp is None:
        return label
    return f"sampled T={temp:g}" + (f", {n}/problem" if n else "")


@dataclass
class SeedRun:
    """One trained seed: its training record, loss curve and evaluations (label -> per-problem pass rate)."""

    name: str
    seed: int
    train: dict[str, Any] = field(default_factory=dict)
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: dict[str, dict[str, float]] = field(default_factory=dict)  # eval key -> problem -> mean pass
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)  # eval key -> eval.json block
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int | None:
        args = self.train.get("sft_args") or {}
        per_device = args.get("per_device_train_batch_size")
        if per_device is None:
            return None
        return (
            int(per_device) * int(args.get("gradient_accumulation_steps") or 1) * int(self.train.get("world_size") or 1)
        )

    @property
    def supervised_tokens(self) -> float | None:
        """Tokens that carried loss, expected over the run: steps × batch × loss tokens per example."""
        t = self.train
        if not t.get("examples") or t.get("loss_tokens_per_epoch") is None or self.batch is None:
            return None
        return t.get("steps", 0) * self.batch * t["loss_tokens_per_epoch"] / t["examples"]

    @property
    def flops(self) -> float | None:
        """Training compute, 6 × parameters × training tokens (prompt and answer, padding excluded)."""
        t = self.train
        if not t.get("params") or t.get("tokens_seen") is None:
            return None
        return 6.0 * t["params"] * t["tokens_seen"]

    def pass_at_1(self, key: str) -> float | None:
        per = self.evals.get(key)
        if per:
            return sum(per.values()) / len(per)
        block = self.blocks.get(key) or {}
        return block.get("pass@1")


@dataclass
class Group:
    """Every seed of one student, in seed order."""

    name: str
    runs: list[SeedRun]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def eval_keys(self) -> list[str]:
        keys: list[str] = []
        for r in self.runs:
            keys += [k for k in r.blocks if k not in keys]
        return keys

    def setting(self) -> str:
        """How long it trained, in words: its step count, or the compute of another group it was matched to."""
        ref = self.runs[0].overrides.get("run.flops_of") if self.runs else None
        if isinstance(ref, str):
            m = SEED_NAME.match(ref)
            return f"equal compute (FLOPs of {m.group('group') if m else ref})"
        steps = sorted({int(r.train["steps"]) for r in self.runs if r.train.get("steps")})
        return "/".join(f"{s:,}" for s in steps) + " steps" if steps else "–"


@dataclass
class Estimate:
    """A mean with a 95% interval and how it was made."""

    mean: float
    low: float
    high: float
    per_seed: list[float]
    how: str

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _problem_rates(path: Path) -> dict[str, dict[str, float]]:
    """label -> problem -> mean pass of the plain (unforced) answers in an eval_items.jsonl."""
    sums: dict[str, dict[str, list[float]]] = {}
    if not path.exists():
        return {}
    with path.open() as fh:
        for line in fh:
            if not line.endswith("\n"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("mode", "plain") != "plain" or "problem_id" not in row:
                continue
            sums.setdefault(row.get("label", "after"), {}).setdefault(row["problem_id"], []).append(
                1.0 if row.get("passed") else 0.0
            )
    return {label: {k: sum(v) / len(v) for k, v in per.items()} for label, per in sums.items()}


def _losses(student: Path) -> list[tuple[int, float]]:
    """The logged training loss (step, loss) of the last checkpoint, if the run saved one."""
    ckpts = sorted(
        (d for d in (student / "checkpoints").glob("checkpoint-*") if d.name.split("-")[-1].isdigit()),
        key=lambda d: int(d.name.split("-")[-1]),
    )
    state = _read_json(ckpts[-1] / "trainer_state.json") if ckpts else None
    out = []
    for h in (state or {}).get("log_history") or []:
        if "loss" in h and "step" in h:
            out.append((int(h["step"]), float(h["loss"])))
    return out


def seed_groups(run: Path) -> list[Group]:
    """The run's variants grouped by student (recipe order); only groups named ``<student>-s<k>``."""
    recipe = _read_json(run / "recipe.json") or {}
    variants: dict[str, Any] = recipe.get("variants") or {}
    names = list(variants)
    vdir = run / "variants"
    if vdir.is_dir():
        names += sorted(d.name for d in vdir.iterdir() if d.is_dir() and d.name not in variants)
    groups: dict[str, list[SeedRun]] = {}
    for name in names:
        m = SEED_NAME.match(name)
        folder = vdir / name
        if not m or not folder.is_dir():
            continue
        sub = _read_json(folder / "recipe.json") or {}
        seed = (sub.get("sft") or {}).get("seed")
        r = SeedRun(name, int(seed) if isinstance(seed, int) else int(m.group("seed")))
        r.overrides = dict(variants.get(name) or {})
        r.train = _read_json(folder / "student" / "train.json") or {}
        r.losses = _losses(folder / "student")
        ev = _read_json(folder / "eval.json") or {}
        if "after" in ev:
            r.blocks["after"] = ev["after"]
        for label, block in (ev.get("models") or {}).items():
            r.blocks[label] = block
        rates = _problem_rates(folder / "eval_items.jsonl")
        r.evals = {k: rates[k] for k in r.blocks if k in rates}
        groups.setdefault(m.group("group"), []).append(r)
    return [Group(g, sorted(runs, key=lambda r: r.seed)) for g, runs in groups.items()]


def _combine(per_seed: list[float], per_problem: list[float], how: str) -> Estimate:
    k, p = len(per_seed), len(per_problem)
    mean = sum(per_seed) / k
    var_problems = 0.0
    if p > 1:
        pm = sum(per_problem) / p
        var_problems = sum((x - pm) ** 2 for x in per_problem) / (p - 1) / p
    if k > 1:
        var_seeds = sum((x - mean) ** 2 for x in per_seed) / (k - 1) / k
        half = t95(k - 1) * math.sqrt(var_seeds + var_problems)
        how = f"{how}; t over {k} seeds"
    else:
        half = NormalDist().inv_cdf(0.975) * math.sqrt(var_problems)
        how = f"{how}; one seed: problems only, no seed variance"
    return Estimate(mean, mean - half, mean + half, per_seed, how)


def accuracy(group: Group, key: str) -> Estimate | None:
    """The group's pass@1 for one evaluation: mean over seeds with its interval (see module docstring)."""
    runs = [r for r in group.runs if r.pass_at_1(key) is not None]
    if not runs:
        return None
    per_seed = [r.pass_at_1(key) or 0.0 for r in runs]
    common = set.intersection(*(set(r.evals.get(key, {})) for r in runs))
    per_problem = [sum(r.evals[key][pid] for r in runs) / len(runs) for pid in sorted(common)]
    return _combine(per_seed, per_problem, f"{len(common)} problems")


def margin(a: Group, b: Group, key: str) -> Estimate | None:
    """``a − b`` for one evaluation: per-seed differences paired by problem, then over seeds."""
    by_seed = {r.seed: r for r in b.runs}
    pairs = [
        (r, by_seed[r.seed])
        for r in a.runs
        if r.seed in by_seed and r.evals.get(key) and by_seed[r.seed].evals.get(key)
    ]
    if not pairs:
        return None
    common = set.intersection(*(set(x.evals[key]) & set(y.evals[key]) for x, y in pairs))
    if not common:
        return None
    pids = sorted(common)
    per_seed = [sum(x.evals[key][p] - y.evals[key][p] for p in pids) / len(pids) for x, y in pairs]
    per_problem = [sum(x.evals[key][p] - y.evals[key][p] for x, y in pairs) / len(pairs) for p in pids]
    return _combine(per_seed, per_problem, f"paired over {len(pids)} problems")


def loss_summary(run: SeedRun, tail: float = 0.25) -> dict[str, float] | None:
    """The training loss at the end and its change over the last ``tail`` of the steps (least squares).

    ``change`` is the fitted loss change across that window; ``relative`` is it over the fitted
    loss at the window's start (−0.10 = still falling by 10% over the last quarter of the run).
    """
    pts = run.losses
    if len(pts) < 3:
        return None
    last = pts[-1][0]
    window = [(s, v) for s, v in pts if s >= (1 - tail) * last] or pts[-3:]
    if len(window) < 3:
        window = pts[-3:]
    n = len(window)
    mx = sum(s for s, _ in window) / n
    my = sum(v for _, v in window) / n
    sxx = sum((s - mx) ** 2 for s, _ in window)
    slope = sum((s - mx) * (v - my) for s, v in window) / sxx if sxx else 0.0
    span = window[-1][0] - window[0][0]
    start = my + slope * (window[0][0] - mx)
    final = sum(v for _, v in pts[-3:]) / len(pts[-3:])
    return {
        "final": final,
        "change": slope * span,
        "relative": slope * span / start if start > 0 else 0.0,
        "window_steps": float(span),
    }


__all__ = ["Estimate", "Group", "SeedRun", "accuracy", "eval_label", "loss_summary", "margin", "seed_groups", "t95"]
