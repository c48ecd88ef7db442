"""Batch bookkeeping in the run folder: an append-only event log, ``batches.jsonl``, folded into records.

Every step of a batch is written *before* the next one starts, one whole line each (see store.py,
so a kill -9 leaves at most a torn last line, dropped on reopen):

    run         the run's random token (once), put in uploaded file names and batch metadata
    intent      a batch input file is complete on disk (its path, map, request count, worst case);
                its sample ids are now reserved: no later run puts them in another file
    uploaded    the provider's file id
    created     the provider's batch id
    status      a polled status change (with request counts); ``lost`` when the provider answers
                404 for the batch id (its requests become pending again)
    cancel      ``tracesynth batches --cancel`` asked the provider to cancel
    ingested    output and error files taken in; the ids without a result are released
    exported    ``--export-batch`` wrote a file for running elsewhere (reserves nothing)
    ingest_file ``--ingest`` took in a results file (path, sha256, counts)

A restart finds each batch where the log left it: an ``intent`` without ``created`` is reconciled
by listing the provider's batches and files by their metadata / names (:mod:`.submit`),
so a crash between "create sent" and "id written" never makes a second batch.

This module reads and writes the log; it talks to no provider and writes no samples.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.rundir.jsonio import json_lines
from tracesynth.rundir.layout import RunLayout
from tracesynth.rundir.store import JsonlFile, RunStore

FINAL = frozenset({"completed", "failed", "expired", "cancelled", "lost"})  # lost: the provider no longer knows it


@dataclass
class BatchRecord:
    """What the log says about one batch input file."""

    local: str
    kind: str  # "remote" (submitted by tracesynth) or "export"
    input: str  # input file, relative to the run folder (remote) or absolute (export)
    map: str  # sample map file, relative to the run folder
    requests: int = 0
    bytes: int = 0
    worst_usd: float = 0.0
    retry: bool = False
    created_t: float = 0.0
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    cancel_requested: bool = False
    ingested: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        """Submitted (or meant to be) and not yet ingested: its ids are reserved."""
        return self.kind == "remote" and self.ingested is None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def describe(self) -> dict[str, Any]:
        """The row ``tracesynth batches`` shows and harvest.json lists."""
        status = self.status or ("exported" if self.kind == "export" else "not submitted")
        return {
            "local": self.local,
            "kind": self.kind,
            "batch_id": self.batch_id,
            "status": status,
            "requests": self.requests,
            "counts": self.counts,
            "ingested": self.ingested,
            "input": self.input,
            "errors": self.errors[:3],
        }


class BatchState:
    """The folded event log of a run folder.

    With a :class:`RunStore` (whose lock makes this process the only writer) events can be recorded;
    with a plain run folder path it is a read-only view (``tracesynth batches`` beside a running harvest).
    """

    def __init__(self, store: RunStore | Path) -> None:
        self.store = store if isinstance(store, RunStore) else None
        self.layout = store.layout if isinstance(store, RunStore) else RunLayout(store)
        self.dir = self.layout.root
        self.log: JsonlFile[Any] | None = self.store.file("batches") if self.store else None
        self.folder = self.layout.batch_dir
        self.token = ""
        self.records: dict[str, BatchRecord] = {}
        self.ingested_files: list[dict[str, Any]] = []
        for ev in self._events():
            self._apply(ev)
        if not self.token and self.log is not None:
            self.token = secrets.token_hex(6)
            self.record("run", token=self.token)

    def _events(self) -> Iterator[dict[str, Any]]:
        # a line being written by a live harvest is not an event yet (json_lines skips it)
        yield from (self.log.iter() if self.log is not None else json_lines(self.layout.batch_log))

    def _apply(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "run":
            self.token = self.token or ev["token"]
            return
        if kind == "ingest_file":
            self.ingested_files.append(ev)
            return
        if kind in ("intent", "exported"):
            self.records[ev["local"]] = BatchRecord(
                local=ev["local"],
                kind="remote" if kind == "intent" else "export",
                input=ev["input"],
                map=ev["map"],
                requests=ev.get("requests", 0),
                bytes=ev.get("bytes", 0),
                worst_usd=ev.get("worst_usd", 0.0),
                retry=ev.get("retry", False),
                created_t=ev.get("t", 0.0),
            )
            return
        rec = self.records.get(ev.get("local", ""))
        if rec is None:
            return
        if kind == "uploaded":
            rec.file_id = ev["file_id"]
        elif kind == "created":
            rec.batch_id, rec.file_id = ev["batch_id"], ev.get("file_id", rec.file_id)
            rec.status = ev.get("status", rec.status)
        elif kind == "status":
            rec.status, rec.counts = ev["status"], ev.get("counts", rec.counts)
            rec.output_file_id = ev.get("output_file_id") or rec.output_file_id
            rec.error_file_id = ev.get("error_file_id") or rec.error_file_id
            rec.errors = ev.get("errors") or rec.errors
        elif kind == "cancel":
            rec.cancel_requested = True
        elif kind == "ingested":
            rec.ingested = {k: v for k, v in ev.items() if k not in ("event", "local", "t")}

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event (flushed as one line) and fold it in."""
        if self.log is None:
            raise RuntimeError("a read-only batch state cannot record events")
        ev = {"event": event, "t": round(time.time(), 3), **fields}
        self.log.append(ev)
        self.log.sync()
        self._apply(ev)
        return ev

    # -- queries ---------------------------------------------------------------------------------
    def next_local(self, prefix: str = "b") -> str:
        used = [int(k[1:]) for k in self.records if k[:1] == prefix and k[1:].isdigit()]
        return f"{prefix}{max(used, default=0) + 1:04d}"

    def remote_name(self, rec: BatchRecord) -> str:
        """The file name an input file is uploaded under (found again by listing files)."""
        return f"tracesynth-{self.token}-{rec.local}.jsonl"

    def active(self) -> list[BatchRecord]:
        return [r for r in self.records.values() if r.active]

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.dir / p

    def map_entries(self, rec: BatchRecord) -> Iterator[dict[str, Any]]:
        """The sample map of a batch: one entry per request (id, problem, index, attempt, ...)."""
        yield from json_lines(self.path(rec.map))

    def reserved_ids(self) -> set[str]:
        """Sample ids in batches not yet ingested: never put into another file."""
        out: set[str] = set()
        for rec in self.active():
            out.update(e["id"] for e in self.map_entries(rec))
        return out


__all__ = ["FINAL", "BatchRecord", "BatchState"]
