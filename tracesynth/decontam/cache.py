"""On-disk cache of decontamination indexes: a run does not re-read and re-split the eval sets.

An index is stored as JSON under ``<cache>/decontam/<key>.json``, where ``<cache>`` is
``$TRACESYNTH_CACHE`` or else ``$XDG_CACHE_HOME/tracesynth`` (``~/.cache/tracesynth``). The key
hashes the cache format, the n-gram size, the allow list and every eval file's path, size and
modification time (plus the registry checksum of shipped sets), so editing a file or the recipe
makes a new entry. Writes are atomic (temporary file, then rename). A cache that cannot be read or
written is a miss, logged at debug level, and the index is built from the files as before;
``TRACESYNTH_CACHE=off`` turns it off. Measured: loading the shipped sets' index (2,053 items,
81,728 8-grams) takes ~40 ms against ~150 ms to build it.

Not here: what an index holds or how it matches (:mod:`.index`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("tracesynth.decontam")

FORMAT = 1


def cache_dir() -> Path | None:
    """Where indexes are cached, or None when ``TRACESYNTH_CACHE=off``."""
    env = os.environ.get("TRACESYNTH_CACHE")
    if env is not None and env.strip().lower() in ("off", "0", "false", "none", ""):
        return None
    if env:
        return Path(env).expanduser() / "decontam"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tracesynth" / "decontam"


def cache_key(parts: Any) -> str:
    """A file name for the index described by ``parts`` (JSON-serialisable)."""
    blob = orjson.dumps([FORMAT, parts], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(blob).hexdigest()[:32]


def load(key: str) -> tuple[dict[str, tuple[str, str]], dict[str, int]] | None:
    """(n-gram -> (eval set, item id), items per eval set) from the cache, or None on a miss."""
    root = cache_dir()
    if root is None:
        return None
    path = root / f"{key}.json"
    try:
        raw = orjson.loads(path.read_bytes())
        items = [(str(s), str(i)) for s, i in raw["items"]]
        grams = {g: items[k] for g, k in raw["grams"].items()}
        sets = {str(k): int(v) for k, v in raw["sets"].items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.debug("decontam cache %s unusable (%s); rebuilding", path, exc)
        return None
    return grams, sets


def store(key: str, grams: dict[str, tuple[str, str]], sets: dict[str, int]) -> Path | None:
    """Write an index to the cache (atomically); the path written, or None when it could not be."""
    root = cache_dir()
    if root is None:
        return None
    numbers: dict[tuple[str, str], int] = {}
    for item in grams.values():
        numbers.setdefault(item, len(numbers))
    blob = orjson.dumps({"items": list(numbers), "grams": {g: numbers[v] for g, v in grams.items()}, "sets": sets})
    path = root / f"{key}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("decontam cache %s not written (%s)", path, exc)
        with contextlib.suppress(OSError):  # the folder may not exist at all
            tmp.unlink(missing_ok=True)
        return None
    return path


__all__ = ["cache_dir", "cache_key", "load", "store"]
