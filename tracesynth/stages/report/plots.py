"""The PNG plots of the run report (matplotlib, Agg backend chosen by the caller).

Each function draws one figure from data the report already read and returns the file name, or
None when there is nothing to draw. No numbers are computed here beyond histogram binning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def draw_all(
    plt: Any,
    out: Path,
    run: Path,
    harvest: dict[str, Any] | None,
    verify: dict[str, Any] | None,
    acc: list[dict[str, Any]],
    cap_rows: list[tuple[str, Any, Any]],
) -> list[str]:
    names = [
        _funnel(plt, out, run, harvest),
        _verdicts(plt, out, verify),
        _lengths(plt, out, run),
        _accuracy(plt, out, acc),
        _thinking_caps(plt, out, cap_rows),
        _throughput(plt, out, harvest),
    ]
    return [n for n in names if n]


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


def _thinking_caps(plt: Any, out: Path, rows: list[tuple[str, Any, Any]]) -> str | None:
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    for student in dict.fromkeys(r[0] for r in rows):
        pts = sorted((b, a) for s, b, a in rows if s == student and b is not None and a is not None)
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=student)
    ax.set_xscale("log", base=2)
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
    ax2 = ax.twinx()
    ax2.plot(t, [p.get("errors", 0) for p in timeline], color="#e15759", label="errors (cumulative)")
    ax2.set_ylabel("errors")
    ax.set_title("Harvest progress")
    fig.legend(fontsize=8, loc="upper left")
    return _save(plt, fig, out, "harvest.png")
