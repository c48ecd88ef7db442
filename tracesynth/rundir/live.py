"""Which rows of ``samples.jsonl`` are live: a sample re-asked with ``--retry-truncated`` is superseded.

``--retry-truncated`` never rewrites history: the truncated answer stays in ``samples.jsonl`` (its cost
stays in the ledger) and the new answer is a new row whose ``supersedes`` names the old id. Stages
that judge or use answers (verify, curate, export) must read only live rows — one per
(problem, index) — or they would count a question twice and keep a cut-off answer:

    from tracesynth.rundir.live import live_samples
    for sample in live_samples(run_dir):          # instead of store.stage("samples", Sample).iter()
        ...

Cost accounting (the receipt, the ledger) keeps reading every row: superseded rows were paid for.
Two streaming passes over the file; only the set of superseded ids is held in memory.
This module reads; it never writes or deletes a row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tracesynth.records import Sample
from tracesynth.rundir.store import JsonlStage, RunStore, read_jsonl


def _path(source: str | Path | RunStore | JsonlStage[Sample]) -> Path:
    if isinstance(source, RunStore):
        return source.dir / "samples.jsonl"
    if isinstance(source, JsonlStage):
        return source.path
    p = Path(source)
    return p / "samples.jsonl" if p.is_dir() else p


def superseded_ids(source: str | Path | RunStore | JsonlStage[Sample]) -> set[str]:
    """Ids of the sample rows that a later row supersedes (a run folder, its store, or samples.jsonl)."""
    out: set[str] = set()
    path = _path(source)
    if not path.exists():
        return out
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # a torn last line is not a record (see store.py)
            if b'"supersedes":null' in raw:  # the common case, without parsing the line
                continue
            old = json.loads(raw).get("supersedes")
            if old:
                out.add(old)
    return out


def live_samples(source: str | Path | RunStore | JsonlStage[Sample]) -> Iterator[Sample]:
    """Stream the sample rows no later row supersedes — what verify, curate and export should read."""
    path = _path(source)
    dead = superseded_ids(path)
    for s in read_jsonl(path, Sample):
        if s.id not in dead:
            yield s


__all__ = ["live_samples", "superseded_ids"]
