"""The PNG plots of the run report (matplotlib, Agg backend chosen by the caller).

Each function draws one figure from data the report already read and returns the file name, or
None when there is nothing to draw. No numbers are computed here beyond histogram binning (the
group means and intervals come from :mod:`.seeds`). Axes that count things have integer ticks
starting at 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tracesynth.stages.report.seeds import Group, accuracy, eval_label


def draw_all(
    plt: Any,
    out: Path,
    run: Path,
    harvest: dict[str, Any] | None,
    verify: dict[str, Any] | None,
    acc: list[dict[str, Any]],
    cap_rows: list[dict[str, Any]],
    groups: list[Group] | None = None,
) -> list[str]:
    names = [
        _funnel(plt, out, run, harvest),
        _verdicts(plt, out, verify),
        _lengths(plt, out, run),
        _seed_accuracy(plt, out, groups or []) or _accuracy(plt, out, acc),
        _losses(plt, out, groups or []),
        _thinking_caps(plt, out, cap_rows),
        _throughput(plt, out, harvest),
    ]
    return [n for n in names if n]


def _counts_axis(ax: Any, top: float) -> None:
    """A count axis: integer ticks from 0 (to 1 when there is nothing to count)."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(1.0, float(top)) * 1.05)


def _save(plt: Any, fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _funnel(plt: Any, out: Path, run: Path, harvest: dict[str, Any] | None) -> str | None:
    labels, values = [], []
    if harvest:
        counts = harvest.get("counts") or {}
        for label, value in (
            ("rows read", (harvest.get("source") or {}).get("rows")),
            ("problems asked", counts.get("problems")),
            ("samples done", counts.get("done_total")),
        ):
            if value is not None:
                labels.append(label)
                values.append(value)
    path = run / "curate.json"
    if not path.exists():
        found = sorted((run / "variants").glob("*/curate.json"))
        path = found[0] if found else path
    try:
        curate = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        curate = {}
    scope = "" if path.parent == run else f"[{path.parent.name}] "
    for step in curate.get("steps", []):
        labels.append(f"{scope}{step.get('step')}")
        values.append(step.get("out", 0))
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(values) + 1.2))
    ax.barh(range(len(values))[::-1], values, color="#4878a8")
    ax.set_yticks(range(len(values))[::-1], labels)
    for i, v in enumerate(values):
        ax.text(v, len(values) - 1 - i, f" {v:,}", va="center", fontsize=8)
    ax.set_title("Funnel: counts through the stages")
    return _save(plt, fig, out, "funnel.png")


def _verdicts(plt: Any, out: Path, verify: dict[str, Any] | None) -> str | None:
    by = (verify or {}).get("counts") or {}
    if not by:
        return None
    names = sorted(by)
    fig, ax = plt.subplots(figsize=(6, 3))
    bottom = [0.0] * len(names)
    for status, color in (("pass", "#59a14f"), ("fail", "#e15759"), ("unverifiable", "#bab0ac")):
        vals = [by[n].get(status, 0) for n in names]
        ax.bar(names, vals, bottom=bottom, label=status, color=color)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.legend(fontsize=8)
    ax.set_title("Verdicts by verifier")
    return _save(plt, fig, out, "verdicts.png")


def _lengths(plt: Any, out: Path, run: Path) -> str | None:
    lengths: list[int] = []
    path = run / "traces.jsonl"
    if not path.exists():
        vdirs = sorted((run / "variants").glob("*/traces.jsonl"))
        path = vdirs[0] if vdirs else path
    if path.exists():
        with path.open() as fh:
            for line in fh:
                if line.endswith("\n"):
                    lengths.append((json.loads(line).get("usage") or {}).get("completion_tokens", 0))
    if not lengths:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(lengths, bins=40, color="#4878a8")
    ax.set_xlabel("completion tokens (reasoning + answer)")
    ax.set_ylabel("traces")
    ax.set_title(f"Trace lengths ({len(lengths):,} traces)")
    return _save(plt, fig, out, "lengths.png")


def _accuracy(plt: Any, out: Path, acc: list[dict[str, Any]]) -> str | None:
    rows = [r for r in acc if r.get("pass@1") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = range(len(rows))
    vals = [100 * r["pass@1"] for r in rows]
    err_lo = [100 * (r["pass@1"] - (r["ci_low"] if r["ci_low"] is not None else r["pass@1"])) for r in rows]
    err_hi = [100 * ((r["ci_high"] if r["ci_high"] is not None else r["pass@1"]) - r["pass@1"]) for r in rows]
    ax.bar(xs, vals, yerr=[err_lo, err_hi], capsize=4, color="#f28e2b")
    ax.set_xticks(list(xs), [r["student"] for r in rows])
    ax.set_ylabel("held-out pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Student accuracy with 95% intervals")
    return _save(plt, fig, out, "accuracy.png")


def _seed_accuracy(plt: Any, out: Path, groups: list[Group]) -> str | None:
    """Each student's mean over seeds with its interval, one bar per evaluation (sampled, greedy), seeds as dots."""
    keys: list[str] = []
    for g in groups:
        keys += [k for k in g.eval_keys() if k not in keys]
    if not groups or not keys:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2), 3.4))
    width = 0.8 / len(keys)
    colors = ["#f28e2b", "#4e79a7", "#59a14f", "#b07aa1"]
    for j, key in enumerate(keys):
        block = next((r.blocks[key] for g in groups for r in g.runs if key in r.blocks), {})
        xs, means, lo, hi, dots = [], [], [], [], []
        for i, g in enumerate(groups):
            e = accuracy(g, key)
            if e is None:
                continue
            x = i + (j - (len(keys) - 1) / 2) * width
            xs.append(x)
            means.append(100 * e.mean)
            lo.append(100 * (e.mean - max(e.low, 0.0)))
            hi.append(100 * (min(e.high, 1.0) - e.mean))
            dots += [(x, 100 * v) for v in e.per_seed]
        ax.bar(
            xs,
            means,
            width=width,
            yerr=[lo, hi],
            capsize=3,
            color=colors[j % len(colors)],
            label=eval_label(block, key),
        )
        if dots:
            ax.scatter([d[0] for d in dots], [d[1] for d in dots], s=8, color="black", zorder=3)
    ax.set_xticks(range(len(groups)), [g.name for g in groups], fontsize=8)
    ax.set_ylabel("held-out pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy: mean over seeds, 95% interval (seeds + problems); dots = seeds", fontsize=9)
    return _save(plt, fig, out, "accuracy.png")


def _losses(plt: Any, out: Path, groups: list[Group]) -> str | None:
    """The logged training loss of every seed, one colour per student."""
    runs = [(g.name, r) for g in groups for r in g.runs if len(r.losses) > 1]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    colors = ["#4e79a7", "#e15759", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2"]
    for i, g in enumerate(groups):
        for k, r in enumerate(r for r in g.runs if len(r.losses) > 1):
            ax.plot(
                [p[0] for p in r.losses],
                [p[1] for p in r.losses],
                color=colors[i % len(colors)],
                lw=1,
                alpha=0.8,
                label=g.name if k == 0 else None,
            )
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (log)")
    ax.legend(fontsize=7)
    ax.set_title("Training loss, every seed")
    return _save(plt, fig, out, "loss.png")


def _thinking_caps(plt: Any, out: Path, rows: list[dict[str, Any]]) -> str | None:
    capped = [r for r in rows if r.get("cap") is not None and r.get("pass@1") is not None]
    if not capped:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    for student in dict.fromkeys(r["student"] for r in capped):
        pts = sorted((r["cap"], r["pass@1"]) for r in capped if r["student"] == student)
        line = ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=student)
        free = next((r for r in rows if r["student"] == student and r.get("cap") is None), None)
        if free and free.get("thinking") is not None:
            color = line[0].get_color()
            ax.axvline(free["thinking"], color=color, ls=":", lw=1)
            ax.axhline(100 * (free.get("pass@1") or 0), color=color, ls="--", lw=1)
            ax.annotate(
                f"uncapped: {free['thinking']:.0f} thinking tokens",
                (free["thinking"], 4),
                fontsize=7,
                rotation=90,
                ha="right",
                va="bottom",
            )
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 100)
    ax.set_xlabel("thinking cap (tokens)")
    ax.set_ylabel("pass@1 (%)")
    ax.legend(fontsize=8)
    ax.set_title("Accuracy vs thinking tokens (budget forcing)")
    return _save(plt, fig, out, "thinking_caps.png")


def _throughput(plt: Any, out: Path, harvest: dict[str, Any] | None) -> str | None:
    timeline = (harvest or {}).get("timeline") or []
    if len(timeline) < 2:
        return None
    t = [p.get("t", 0) for p in timeline]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(t, [p.get("done", 0) for p in timeline], label="samples done")
    ax.set_xlabel("seconds")
    ax.set_ylabel("samples")
    _counts_axis(ax, max(p.get("done", 0) for p in timeline))
    ax2 = ax.twinx()
    errors = [p.get("errors", 0) for p in timeline]
    ax2.plot(t, errors, color="#e15759", label="errors (cumulative)")
    ax2.set_ylabel("errors (count)")
    _counts_axis(ax2, max(errors))
    ax.set_title("Harvest progress")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [x.get_label() for x in lines], fontsize=8, loc="lower right")
    return _save(plt, fig, out, "harvest.png")
