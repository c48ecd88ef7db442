"""JSON in a run folder: the one atomic JSON writer and the one reader of complete JSONL lines.

* :func:`write_json` writes to a temporary file in the same folder and renames it over the target,
  so a reader (or a crash) sees the old file or the new one, never half of one.
* :func:`read_json` reads a summary that may be missing (``None``); a file that is not JSON is a
  :class:`~tracesynth.errors.StoreError` naming it, unless ``missing_ok_if_bad``.
* :func:`json_lines` streams the complete lines of a JSONL file as dicts. A last line without its
  newline is being written or was torn by a crash: it is not a record yet and is skipped. A line
  before the last that is not a JSON object is a StoreError naming ``file:line``.

This module knows nothing about what the records mean.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tracesynth.errors import StoreError


def dumps(data: Any, *, indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, default=str, ensure_ascii=False)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(data, indent=indent) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path, *, bad_ok: bool = False) -> Any:
    """The JSON in ``path``, or None when it does not exist (or, with ``bad_ok``, is not valid JSON)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        if bad_ok:
            return None
        raise StoreError(f"{path}: not valid JSON ({exc})") from None


def json_lines(path: str | Path, *, raw: bool = False) -> Iterator[Any]:
    """Complete lines of a JSONL file as dicts (or as bytes with ``raw``); see the module docstring."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                return
            if raw:
                yield line
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise StoreError(f"{path}:{lineno}: not a JSON record") from None
            if not isinstance(obj, dict):
                raise StoreError(f"{path}:{lineno}: not a JSON object")
            yield obj


__all__ = ["dumps", "json_lines", "read_json", "write_json"]
