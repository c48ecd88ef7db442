"""The run folder: append-only JSONL stages, crash recovery, the done-set, a lock and a manifest.

Guarantees (each has a test):

* A write is one whole line, written with a single ``os.write`` on an ``O_APPEND`` descriptor, so
  a killed process leaves at most one torn line: the last one. On reopen a torn last line (no
  trailing newline, or not valid JSON) is cut off and reported in :attr:`JsonlStage.recovered`;
  every complete line before it is kept. A bad line *before* the last is not a crash artefact and
  raises :class:`StoreError` naming file and line.
* A stage with a key never holds the same key twice: :meth:`JsonlStage.append` refuses it.
* Reads stream line by line; only the set of keys is held in memory.
* One process at a time writes a run folder: :class:`RunStore` takes an ``flock`` on
  ``<run>/.lock`` (released by the OS even on kill -9); a second writer gets
  :class:`RunLockedError` naming the holder's pid.

This module knows nothing about what the records mean; stages decide which files they use.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from tracesynth.errors import RunLockedError, StoreError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class JsonlStage(Generic[M]):
    """One append-only JSONL file of records, optionally unique by ``key``."""

    def __init__(
        self, path: str | Path, model: type[M] | None = None, key: str | tuple[str, ...] | None = "id"
    ):
        self.path = Path(path)
        self.model = model
        self.key = (key,) if isinstance(key, str) else key
        self.keys: set[str] = set()
        self.count = 0
        self.recovered: list[str] = []
        self._fd: int | None = None
        self._scan()

    # -- reading -------------------------------------------------------------------------
    def _scan(self) -> None:
        """Count lines, collect keys, and cut a torn last line left by a crash."""
        if not self.path.exists():
            return
        good_end = 0
        bad: tuple[int, str] | None = None
        with self.path.open("rb") as fh:
            lineno = 0
            for raw in fh:
                lineno += 1
                if bad is not None:
                    raise StoreError(f"{self.path}:{bad[0]}: corrupt record ({bad[1]}) before the last line")
                if not raw.endswith(b"\n"):
                    bad = (lineno, "no newline")
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    bad = (lineno, "invalid JSON")
                    continue
                if not isinstance(obj, dict):
                    bad = (lineno, "not a JSON object")
                    continue
                good_end += len(raw)
                self.count += 1
                if self.key is not None:
                    k = ":".join(str(obj.get(f)) for f in self.key)
                    if k in self.keys:
                        raise StoreError(f"{self.path}:{lineno}: duplicate {self.key_name} {k!r}")
                    self.keys.add(k)
        if bad is not None:
            size = self.path.stat().st_size
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)
            msg = f"{self.path}:{bad[0]}: dropped a torn last line ({size - good_end} bytes, {bad[1]}) left by a crash"
            self.recovered.append(msg)
            log.warning(msg)

    def __iter__(self) -> Iterator[M] | Iterator[dict[str, Any]]:
        return self.iter()

    def iter(self) -> Iterator[Any]:
        """Stream the records (as models when the stage has one, else dicts)."""
        return read_jsonl(self.path, self.model)

    @property
    def key_name(self) -> str:
        return "+".join(self.key or ())

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return self.count

    # -- writing -------------------------------------------------------------------------
    def append(self, record: M | dict[str, Any]) -> None:
        """Write one record as one flushed line; refuse a key already present."""
        if isinstance(record, BaseModel):
            line = record.model_dump_json()
            k = ":".join(str(getattr(record, f)) for f in self.key) if self.key else ""
        else:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
            k = ":".join(str(record.get(f)) for f in self.key) if self.key else ""
        if self.key is not None:
            if k in self.keys:
                raise StoreError(f"{self.path}: {self.key_name} {k!r} is already written")
            self.keys.add(k)
        data = (line + "\n").encode("utf-8")
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        written = os.write(self._fd, data)
        while written < len(data):  # only on exotic filesystems; keep the line whole anyway
            written += os.write(self._fd, data[written:])
        self.count += 1

    def extend(self, records: Iterable[M | dict[str, Any]]) -> None:
        for r in records:
            self.append(r)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlStage[M]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | Path, model: type[M] | None = None) -> Iterator[Any]:
    """Stream a JSONL stage's records without opening it for writing (another run's file, a live one).

    A last line without its newline is being written or was torn: it is not a record yet. A bad
    line is a :class:`StoreError` naming ``file:line``.
    """
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return
            if model is None:
                yield json.loads(raw)
                continue
            try:
                yield model.model_validate_json(raw)
            except ValueError as exc:
                why = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
                raise StoreError(f"{path}:{lineno}: not a valid {model.__name__}: {why}") from None


class RunStore:
    """A run folder owned by one process: stages, manifest, lock."""

    def __init__(self, run_dir: str | Path, *, lock: bool = True):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self._stages: dict[str, JsonlStage[Any]] = {}
        if lock:
            self._acquire()

    def _acquire(self) -> None:
        path = self.dir / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"{self.dir}: run folder is in use by another process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def stage(
        self, name: str, model: type[M] | None = None, key: str | tuple[str, ...] | None = "id"
    ) -> JsonlStage[M]:
        """The stage file ``<run>/<name>.jsonl`` (opened once per store)."""
        if name not in self._stages:
            self._stages[name] = JsonlStage(self.dir / f"{name}.jsonl", model, key)
        return self._stages[name]

    @property
    def recovered(self) -> list[str]:
        return [m for s in self._stages.values() for m in s.recovered]

    # -- manifest ------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {}
        try:
            return json.loads(self.manifest_path.read_text())
        except ValueError as exc:
            raise StoreError(f"{self.manifest_path}: invalid JSON ({exc})") from None

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into manifest.json (written atomically via rename)."""
        data = self.manifest()
        data.setdefault("created_at", time.time())
        if "versions" not in data:
            data["versions"] = package_versions()
        for k, v in fields.items():
            if isinstance(v, dict) and isinstance(data.get(k), dict):
                data[k].update(v)
            else:
                data[k] = v
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.manifest_path)
        return data

    def mark_stage(self, stage: str, **info: Any) -> None:
        """Record a stage's start/end times and counts in the manifest."""
        self.update_manifest(stages={stage: {**self.manifest().get("stages", {}).get(stage, {}), **info}})

    def close(self) -> None:
        for s in self._stages.values():
            s.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results (recorded in manifests and cards)."""
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:  # ~25 ms (importlib.metadata parses each METADATA file): once
    out = {"python": platform.python_version(), "platform": sys.platform}
    names = ("tracesynth", "openai", "httpx", "datasets", "math-verify", "reasoning-gym", "torch", "transformers")
    names += ("trl",)
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
