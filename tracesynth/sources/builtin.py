"""The problem sets shipped in ``data/``: a registry read from ``data/registry.json``, checksums, lookup.

Recipes name a shipped set without a path (``source: {kind: builtin, name: gsm8k, split: train}``);
evaluation and decontamination name them as ``math500`` or ``gsm8k:test``. Every time a set is
opened its sha256 is checked against the registry (which matches ``data/README.md``): a mismatch
is a :class:`~tracesynth.errors.DataError`, as is an unknown name (the message lists the known
ones). ``tracesynth data list`` prints :func:`registry`.

This module knows the files and their column mapping; it does not turn rows into Problems
(:mod:`tracesynth.sources` does).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from tracesynth.errors import DataError
from tracesynth.sources.resources import data_dir

Role = Literal["pool", "eval"]


@dataclass(frozen=True)
class DataSet:
    """One shipped file: a split of a named set."""

    name: str
    split: str
    file: str
    role: Role
    rows: int
    licence: str
    sha256: str
    domain: str = "math"
    source: str = ""
    description: str = ""
    columns: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        """``name:split`` — how evaluation and decontamination refer to a set."""
        return f"{self.name}:{self.split}"

    @property
    def path(self) -> Path:
        return data_dir() / self.file


def registry() -> list[DataSet]:
    """Every shipped set, in registry order."""
    return list(_load_registry(str(data_dir() / "registry.json")))


def eval_sets() -> list[DataSet]:
    """The shipped sets with role ``eval`` (decontamination's default list)."""
    return [d for d in registry() if d.role == "eval"]


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``"gsm8k:test"`` / ``"gsm8k/test"`` / ``"math500"`` → (name, split or None)."""
    for sep in (":", "/"):
        if sep in ref:
            name, split = ref.split(sep, 1)
            return name.strip(), split.strip() or None
    return ref.strip(), None


def is_builtin(ref: str) -> bool:
    """True when ``ref`` names a shipped set (with or without a split)."""
    name, split = parse_ref(ref)
    return any(d.name == name and (split is None or d.split == split) for d in registry())


def get(name: str, split: str | None = None) -> DataSet:
    """Look a set up by name (and split; optional when the name has only one)."""
    sets = registry()
    matches = [d for d in sets if d.name == name]
    if not matches:
        known = ", ".join(sorted({d.key for d in sets}))
        raise DataError(f"unknown data set {name!r}; shipped sets are: {known}")
    if split is None:
        if len(matches) > 1:
            splits = ", ".join(d.split for d in matches)
            raise DataError(f"data set {name!r} has several splits ({splits}); name one with split")
        return matches[0]
    for d in matches:
        if d.split == split:
            return d
    splits = ", ".join(d.split for d in matches)
    raise DataError(f"data set {name!r} has no split {split!r}; its splits are: {splits}")


def verified_path(ds: DataSet) -> Path:
    """The set's file, after checking that it exists and its sha256 matches the registry."""
    path = ds.path
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: shipped data set {ds.key} is missing; reinstall tracesynth") from None
    digest = _sha256(str(path), stat.st_mtime_ns, stat.st_size)
    if digest != ds.sha256:
        raise DataError(
            f"{path}: checksum mismatch for {ds.key} (sha256 {digest[:16]}…, data/README.md says "
            f"{ds.sha256[:16]}…); the file was modified or is corrupt"
        )
    return path


@lru_cache(maxsize=64)
def _sha256(path: str, _mtime_ns: int, _size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=4)
def _load_registry(path: str) -> tuple[DataSet, ...]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return tuple(DataSet(**entry) for entry in raw["sets"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable data registry ({exc})") from None


__all__ = ["DataSet", "eval_sets", "get", "is_builtin", "parse_ref", "registry", "verified_path"]
