"""Sharding a harvest across machines, and merging the shards back into one run folder.

``--shard i/N`` keeps the problems whose id hashes to ``i`` modulo ``N`` — deterministic, and
independent of source order — and writes to its own folder ``<run_dir>/shards/<i>-of-<N>/``
(own lock, own problems / samples / failures / harvest.json), so shards never contend.
:func:`merge` appends every shard's records that the run folder does not hold yet (samples and
problems by id; failure rows by (id, attempt, created_at)), and sums their harvest summaries into
``<run_dir>/harvest.json``. Merging twice adds nothing.

This module moves records between run folders; it never calls a teacher.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tracesynth.errors import ConfigError, UserError
from tracesynth.rundir.jsonio import json_lines, read_json, write_json
from tracesynth.rundir.layout import RunLayout
from tracesynth.rundir.store import RunStore


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` → (i, N) with 0 <= i < N."""
    if text is None or text == "":
        return None
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def in_shard(problem_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None or shard[1] == 1:
        return True
    h = int.from_bytes(hashlib.sha256(problem_id.encode()).digest()[:8], "big")
    return h % shard[1] == shard[0]


def shard_dir(run_dir: str | Path, shard: tuple[int, int]) -> Path:
    return RunLayout(run_dir).shard(*shard).root


class MergeResult(BaseModel):
    run_dir: str
    shards: list[str]
    added: dict[str, int]


def _failure_key(rec: dict[str, Any]) -> str:
    return f"{rec.get('id')}:{rec.get('attempt')}:{rec.get('created_at')}"


def merge(run_dir: str | Path) -> MergeResult:
    """Join ``<run_dir>/shards/*`` into ``run_dir`` (idempotent)."""
    root = RunLayout(run_dir)
    shard_dirs = sorted(p for p in root.shards.glob("*-of-*") if p.is_dir())
    if not shard_dirs:
        raise UserError(f"{root.root}: no shard folders under {root.shards} (run harvest with --shard I/N first)")
    added = {"problems": 0, "samples": 0, "failures": 0, "verdicts": 0}
    summaries: list[tuple[str, dict[str, Any]]] = []
    with RunStore(root.root) as store:
        problems, samples, failures = store.problems, store.samples, store.failures
        seen_failures = {_failure_key(r) for r in json_lines(failures.path)}
        for sd in shard_dirs:
            with RunStore(sd) as shard:  # takes the shard's lock: refuses a shard still being written
                for name, target in (("problems", problems), ("samples", samples)):
                    for rec in json_lines(shard.layout.jsonl(name)):
                        if rec.get("id") not in target:
                            target.append(rec)
                            added[name] += 1
                # verdicts written while harvesting (sampling until verified), one per (sample, verifier)
                for rec in json_lines(shard.layout.jsonl("verdicts")):
                    if f"{rec.get('sample_id')}:{rec.get('verifier')}" not in store.verdicts:
                        store.verdicts.append(rec)
                        added["verdicts"] += 1
                for rec in json_lines(shard.layout.failures):
                    k = _failure_key(rec)
                    if k not in seen_failures:
                        seen_failures.add(k)
                        failures.append(rec)
                        added["failures"] += 1
            summary = read_json(RunLayout(sd).harvest_json, bad_ok=True)
            if isinstance(summary, dict):
                summaries.append((sd.name, summary))
        _write_summary(root, shard_dirs, summaries, len(samples), len(problems))
        store.mark_stage("merge", shards=[p.name for p in shard_dirs], added=added)
    return MergeResult(run_dir=str(root.root), shards=[p.name for p in shard_dirs], added=added)


def _write_summary(
    root: RunLayout, shard_dirs: list[Path], summaries: list[tuple[str, dict[str, Any]]], samples: int, problems: int
) -> None:
    def total(path: tuple[str, ...]) -> float:
        s = 0.0
        for _, d in summaries:
            v: Any = d
            for k in path:
                v = v.get(k, {}) if isinstance(v, dict) else {}
            s += v if isinstance(v, (int, float)) else 0
        return s

    errors: dict[str, int] = {}
    for _, d in summaries:
        for k, v in d.get("errors_by_kind", {}).items():
            errors[k] = errors.get(k, 0) + v
    merged = {
        "status": "merged",
        "shards": [p.name for p in shard_dirs],
        "counts": {
            "problems": problems,
            "done_total": samples,
            "failed": int(total(("counts", "failed"))),
            "gave_up": int(total(("counts", "gave_up"))),
        },
        "ledger": {
            "spent_usd": total(("ledger", "spent_usd")),
            "possibly_billed_usd": total(("ledger", "possibly_billed_usd")),
        },
        "errors_by_kind": errors,
        "per_shard": dict(summaries),
    }
    write_json(root.harvest_json, merged)
