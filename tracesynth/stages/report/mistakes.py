"""What verification caught and what it did not, for a run harvested from the simulated teacher.

The simulated teacher plants wrong answers (a mistake inside a step, transposed digits) and slips
that the trace notices and corrects before a right answer. :func:`tracesynth.sim.solver.audit`
reads a trace in the simulator's format against the true one and says which of these it holds, so
this module needs no record from the simulator: it reads the harvested samples and their verdicts
(what verification caught), each variant's kept traces (what its student was trained on) and each
student's held-out answers (what it learned to write). Only for runs whose recipe enabled the
simulated teacher; for another teacher there is no ground truth of the trace to compare with.
Reads files, counts, writes nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# audit kind -> words for the report
KIND_WORDS = {
    "clean": "nothing wrong",
    "slip": "a slip noticed and corrected mid-trace, right answer",
    "step": "wrong answer: a mistake inside a step (a dropped carry or borrow, a wrong digit)",
    "transposed": "wrong answer: right work, two digits of the result swapped",
    "wrong": "wrong answer, another kind",
    "other": "right answer, trace not the true one (unnoticed error or garbled)",
    "not_arithmetic": "not an arithmetic trace",
}
ORDER = ("clean", "slip", "step", "transposed", "wrong", "other", "not_arithmetic")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            if line.endswith("\n"):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


def simulated(run: Path) -> dict[str, Any] | None:
    """The simulated teacher's options when the run's recipe enabled it, else None."""
    try:
        recipe = json.loads((run / "recipe.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    sim = (recipe.get("teacher") or {}).get("sim") or {}
    return dict(sim.get("options") or {}) if sim.get("enabled") else None


def harvest_table(run: Path) -> dict[str, Counter[str]] | None:
    """audit kind -> Counter of verification outcome (``pass`` / ``fail`` / ``unverifiable``) over the samples."""
    from tracesynth.sim.solver import audit

    verdicts: dict[str, list[str]] = {}
    for v in _rows(run / "verdicts.jsonl"):
        verdicts.setdefault(v.get("sample_id", ""), []).append(v.get("status", ""))
    seen: dict[str, dict[str, Any]] = {}
    for s in _rows(run / "samples.jsonl"):
        if s.get("error") is None and s.get("finish_reason") == "stop":
            seen[s["id"]] = s  # the last complete row of an id wins
    if not seen:
        return None
    out: dict[str, Counter[str]] = {}
    for sid, s in seen.items():
        kind = audit(s.get("reasoning"), s.get("content"))
        statuses = verdicts.get(sid) or ["unverified"]
        outcome = "fail" if "fail" in statuses else "pass" if all(x == "pass" for x in statuses) else "unverifiable"
        out.setdefault(kind, Counter())[outcome] += 1
    return out


def trace_kinds(path: Path) -> Counter[str]:
    """audit kind -> count over a traces.jsonl (what a student was trained on)."""
    from tracesynth.sim.solver import audit

    return Counter(audit(t.get("reasoning"), t.get("content")) for t in _rows(path))


def answer_kinds(path: Path, label: str = "after") -> Counter[str]:
    """audit kind -> count over a student's plain held-out answers of one eval label."""
    from tracesynth.sim.solver import audit

    return Counter(
        audit(r.get("reasoning"), r.get("content"))
        for r in _rows(path)
        if r.get("label") == label and r.get("mode", "plain") == "plain"
    )


__all__ = ["KIND_WORDS", "ORDER", "answer_kinds", "harvest_table", "simulated", "trace_kinds"]
