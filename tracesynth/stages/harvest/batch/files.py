"""Batch input files: OpenAI batch JSONL lines, split by the provider's per-file limits, plus sample maps.

One line per request, the format of OpenAI's Batch API and ``vllm run-batch``::

    {"custom_id": "<sample id>", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

:class:`PartWriter` streams :class:`~tracesynth.stages.harvest.plan.PendingRequest` objects into files of at
most ``max_requests`` lines and ``max_bytes`` bytes, and next to each a *map* (``<name>.map.jsonl``:
sample id → problem, index, attempt, what it supersedes) that ingesting needs, because a result line
carries only the ``custom_id``. Each file is written under a temporary name, fsynced and renamed,
so a file that exists is complete; a part is handed to ``on_part`` only then.

This module writes files; it uploads nothing and records nothing in the run's log.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tracesynth.errors import DataError
from tracesynth.stages.harvest.plan import PendingRequest

URL = "/v1/chat/completions"


@dataclass
class Part:
    """A finished batch input file and its map."""

    name: str
    path: Path
    map_path: Path
    requests: int
    bytes: int
    sha256: str
    worst_usd: float


def request_line(req: PendingRequest) -> bytes:
    line = {"custom_id": req.id, "method": "POST", "url": URL, "body": req.body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class PartWriter:
    """Write requests into size-limited parts (see module docstring).

    Part ``k`` is named ``name_for(k)`` (called when it is opened); its file is
    ``folder/<file_prefix><name>.jsonl`` and its map ``map_folder/<name>.map.jsonl``.
    """

    def __init__(
        self,
        folder: Path,
        name_for: Callable[[int], str],
        *,
        max_requests: int,
        max_bytes: int,
        map_folder: Path | None = None,
        file_prefix: str = "",
        on_part: Callable[[Part], None] | None = None,
    ) -> None:
        self.folder, self.name_for = folder, name_for
        self.map_folder, self.file_prefix = map_folder or folder, file_prefix
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.on_part = on_part
        self.parts: list[Part] = []
        self._k = 0
        self._fh: IO[bytes] | None = None
        self._map: IO[bytes] | None = None
        self._paths: tuple[Path, Path] | None = None
        self._name = ""
        self._n = self._bytes = 0
        self._worst = 0.0
        self._sha = hashlib.sha256()

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.map_folder.mkdir(parents=True, exist_ok=True)
        name = self._name = self.name_for(self._k)
        self._k += 1
        path, map_path = self.folder / f"{self.file_prefix}{name}.jsonl", self.map_folder / f"{name}.map.jsonl"
        self._paths = (path, map_path)
        self._fh = open(str(path) + ".tmp", "wb")  # closed in _close
        self._map = open(str(map_path) + ".tmp", "wb")
        self._n = self._bytes = 0
        self._worst = 0.0
        self._sha = hashlib.sha256()

    def add(self, req: PendingRequest, worst_usd: float = 0.0) -> None:
        line = request_line(req)
        if len(line) > self.max_bytes:
            raise DataError(
                f"sample {req.id}: one request is {len(line):,} bytes, over teacher.batch.max_bytes "
                f"({self.max_bytes:,})"
            )
        if self._fh is not None and (self._n >= self.max_requests or self._bytes + len(line) > self.max_bytes):
            self._close()
        if self._fh is None:
            self._open()
        assert self._fh is not None and self._map is not None
        self._fh.write(line)
        self._map.write((json.dumps(req.map_entry(), separators=(",", ":")) + "\n").encode())
        self._sha.update(line)
        self._n += 1
        self._bytes += len(line)
        self._worst += worst_usd

    def extend(self, reqs: Iterable[PendingRequest]) -> None:
        for r in reqs:
            self.add(r)

    def _close(self) -> None:
        assert self._fh is not None and self._map is not None and self._paths is not None
        for fh, final in ((self._map, self._paths[1]), (self._fh, self._paths[0])):  # the map first
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(str(final) + ".tmp", final)
        part = Part(
            self._name, self._paths[0], self._paths[1], self._n, self._bytes, self._sha.hexdigest(), self._worst
        )
        self._fh = self._map = None
        self.parts.append(part)
        if self.on_part is not None:
            self.on_part(part)

    def close(self) -> list[Part]:
        """Finish the last part; return every part written."""
        if self._fh is not None:
            self._close()
        return self.parts


__all__ = ["URL", "Part", "PartWriter", "request_line"]
