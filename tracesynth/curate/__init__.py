"""Curation: verified samples → traces.jsonl (keep policy, dedup, decontamination, length, s1 selection).

``curate(recipe)`` (in :mod:`tracesynth.curate.stage`) is the stage; the steps live in
filters.py, dedup.py, decontam.py and select.py. :func:`decontam_filter` is also used by
harvest before any teacher call. Importing this package is light: datasketch and tokenizers are
imported only by the steps that need them.
"""

from __future__ import annotations

from typing import Any

from tracesynth.callable_module import make_callable
from tracesynth.curate.decontam import DecontamIndex, Hit, decontam_filter, decontam_summary


def __getattr__(name: str) -> Any:
    if name in ("curate", "CurateResult"):
        from tracesynth.curate import stage

        return getattr(stage, name)
    raise AttributeError(f"module 'tracesynth.curate' has no attribute {name!r}")


def _curate(*args: Any, **kwargs: Any) -> Any:
    from tracesynth.curate.stage import curate

    return curate(*args, **kwargs)


make_callable(__name__, _curate)  # `tracesynth.curate(recipe)` works even after this package is imported

__all__ = ["CurateResult", "DecontamIndex", "Hit", "curate", "decontam_filter", "decontam_summary"]
