"""The run folder: append-only JSONL record files, crash recovery, a lock, a manifest and stage marks.

Guarantees (each has a test):

* A write is one whole line, written with a single ``os.write`` on an ``O_APPEND`` descriptor, so
  a killed process leaves at most one torn line: the last one. On reopen a torn last line (no
  trailing newline, or not valid JSON) is cut off and reported in :attr:`JsonlFile.recovered`;
  every complete line before it is kept. A bad line *before* the last is not a crash artefact and
  raises :class:`StoreError` naming file and line.
* A file with a key never holds the same key twice: :meth:`JsonlFile.append` refuses it.
* Reads stream line by line; only the set of keys is held in memory.
* One process at a time writes a run folder: :class:`RunStore` takes an ``flock`` on
  ``<run>/.lock`` (released by the OS even on kill -9); a second writer gets
  :class:`RunLockedError` naming the holder's pid. Forked children close their copy of the lock
  at fork, so a worker never keeps it; a lock whose recorded holder is dead (held by something that
  still had the file open) is taken over with a warning.
* A store never writes into an existing folder that is not a run folder (one holding other
  files), unless ``force`` (:func:`tracesynth.rundir.layout.is_run_folder`).
* :meth:`RunStore.stage_run` marks a stage ``running`` in the manifest when it starts and
  ``complete`` (or ``failed`` / ``interrupted``) when it ends, with ``started_at`` / ``ended_at``.

This module knows nothing about what the records mean; stages decide what they write.
"""

from __future__ import annotations

import contextlib
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

from pydantic import BaseModel, ValidationError

from tracesynth.errors import RunLockedError, StoreError, UserError
from tracesynth.rundir.jsonio import json_lines, read_json, write_json
from tracesynth.rundir.layout import RECORD_FILES, RunLayout, is_run_folder

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
_LOCK_FDS: set[int] = set()  # lock descriptors of this process's stores (closed in forked children)


def _close_locks_in_child() -> None:
    """A forked child (a verifier worker) must not keep the parent's lock alive after the parent dies."""
    for fd in list(_LOCK_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_locks_in_child)


class JsonlFile(Generic[M]):
    """One append-only JSONL file of records, optionally unique by ``key``."""

    def __init__(self, path: str | Path, model: type[M] | None = None, key: str | tuple[str, ...] | None = "id"):
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

    def __iter__(self) -> Iterator[Any]:
        return self.iter()

    def iter(self) -> Iterator[Any]:
        """Stream the records (as models when the file has one, else dicts)."""
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
        try:
            data = (line + "\n").encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: refuse it here, never write half a file
            raise StoreError(f"{self.path}: a record holds text that is not valid Unicode ({exc.reason})") from None
        if self.key is not None:
            if k in self.keys:
                raise StoreError(f"{self.path}: {self.key_name} {k!r} is already written")
            self.keys.add(k)
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

    def __enter__(self) -> JsonlFile[M]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


JsonlStage = JsonlFile  # the name of the public API before "stage" came to mean a pipeline step only


def read_jsonl(path: str | Path, model: type[M] | None = None) -> Iterator[Any]:
    """Stream a JSONL file's records without opening it for writing (another run's file, a live one).

    Complete lines only (:func:`tracesynth.rundir.jsonio.json_lines`); a bad line is a :class:`StoreError`
    naming ``file:line``. With ``model`` each line is validated into it.
    """
    if model is None:
        yield from json_lines(path)
        return
    for lineno, raw in enumerate(json_lines(path, raw=True), 1):
        try:
            yield model.model_validate_json(raw)
        except ValidationError as exc:
            why = exc.errors()[0]["msg"]
            raise StoreError(f"{path}:{lineno}: not a valid {model.__name__}: {why}") from None


def _record_model(name: str) -> tuple[type[BaseModel] | None, str | tuple[str, ...] | None]:
    from tracesynth import records

    model_name, key = RECORD_FILES[name]
    return (getattr(records, model_name) if model_name else None), key


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """A run folder owned by one process: record files, manifest, lock, stage marks."""

    def __init__(self, run_dir: str | Path, *, lock: bool = True, force: bool = False):
        self.layout = RunLayout(run_dir)
        self.dir = self.layout.root
        if not force and not is_run_folder(self.dir):
            shown = ", ".join(sorted(e.name for e in self.dir.iterdir())[:3])
            raise UserError(
                f"run_dir {self.dir}: an existing folder that is not a tracesynth run folder (it holds "
                f"{shown}, ...); choose another run_dir, or pass --force to use it anyway"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self._files: dict[str, JsonlFile[Any]] = {}
        self.notes: list[str] = []  # things worth telling the user (a lock taken over)
        if lock:
            self._acquire()

    def _acquire(self) -> None:
        path = self.layout.lock
        for _ in range(2):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if holder.isdigit() and not _alive(int(holder)) and _take_over(path, holder):
                    note = (
                        f"{self.dir}: took over the lock of pid {holder}, which is dead (a process it started "
                        f"still held the lock file; it is moved aside as {path.name}.stale-{holder})"
                    )
                    log.warning(note)
                    self.notes.append(note)
                    continue
                raise RunLockedError(f"{self.dir}: run folder is in use by another process (pid {holder})") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            self._lock_fd = fd
            _LOCK_FDS.add(fd)
            return
        raise RunLockedError(f"{self.dir}: could not take the run folder's lock")

    # -- record files ------------------------------------------------------------------------
    def file(self, name: str, model: type[M] | None = None, key: str | tuple[str, ...] | None = "id") -> JsonlFile[M]:
        """The JSONL file ``<run>/<name>.jsonl``, opened once per store (model and key from
        :data:`~tracesynth.rundir.layout.RECORD_FILES` for the run folder's own files)."""
        if name not in self._files:
            if name in RECORD_FILES and model is None:
                rec_model, key = _record_model(name)
                self._files[name] = JsonlFile(self.layout.jsonl(name), rec_model, key)
            else:
                self._files[name] = JsonlFile(self.layout.jsonl(name), model, key)
        return self._files[name]

    @property
    def samples(self) -> JsonlFile[Any]:
        return self.file("samples")

    @property
    def failures(self) -> JsonlFile[Any]:
        return self.file("failures")

    @property
    def problems(self) -> JsonlFile[Any]:
        return self.file("problems")

    @property
    def verdicts(self) -> JsonlFile[Any]:
        return self.file("verdicts")

    @property
    def recovered(self) -> list[str]:
        return [m for s in self._files.values() for m in s.recovered]

    # -- manifest ------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.layout.manifest

    def manifest(self) -> dict[str, Any]:
        data = read_json(self.manifest_path)
        return data if isinstance(data, dict) else {}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into manifest.json (written atomically)."""
        data = self.manifest()
        data.setdefault("created_at", time.time())
        if "versions" not in data:
            data["versions"] = package_versions()
        for k, v in fields.items():
            if isinstance(v, dict) and isinstance(data.get(k), dict):
                data[k].update(v)
            else:
                data[k] = v
        write_json(self.manifest_path, data)
        return data

    def mark_stage(self, stage: str, **info: Any) -> None:
        """Merge ``info`` into the manifest's record of ``stage``."""
        self.update_manifest(stages={stage: {**self.manifest().get("stages", {}).get(stage, {}), **info}})

    @contextlib.contextmanager
    def stage_run(self, stage: str, **info: Any) -> Iterator[dict[str, Any]]:
        """Mark ``stage`` running now and, when the block ends, complete / failed / interrupted.

        The block may put more fields (counts, its own status) into the yielded dict.
        """
        self.mark_stage(stage, status="running", started_at=time.time(), ended_at=None, **info)
        end: dict[str, Any] = {}
        try:
            yield end
        except KeyboardInterrupt:
            self.mark_stage(stage, **{**end, "status": "interrupted", "ended_at": time.time()})
            raise
        except BaseException as exc:
            self.mark_stage(stage, **{**end, "status": "failed", "error": str(exc)[:300], "ended_at": time.time()})
            raise
        self.mark_stage(stage, **{"status": "complete", **end, "ended_at": time.time()})

    def close(self) -> None:
        for s in self._files.values():
            s.close()
        if self._lock_fd is not None:
            _LOCK_FDS.discard(self._lock_fd)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _take_over(path: Path, holder: str) -> bool:
    """Move a lock file held by a dead pid's orphans aside (their lock stays on the old file)."""
    try:
        os.replace(path, path.with_name(f"{path.name}.stale-{holder}"))
    except OSError:
        return False
    return True


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results (recorded in manifests and cards)."""
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:  # ~25 ms (importlib.metadata parses each METADATA file): once
    out = {"python": platform.python_version(), "platform": sys.platform}
    names = (
        "tracesynth",
        "openai",
        "httpx",
        "datasets",
        "math-verify",
        "reasoning-gym",
        "torch",
        "transformers",
        "trl",
    )
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


__all__ = ["JsonlFile", "JsonlStage", "RunStore", "package_versions", "read_jsonl"]
