"""Find the resources shipped beside the code: prompt templates (``prompts/``) and problem sets (``data/``).

Two layouts are supported, checked in this order:

1. an installed wheel (``pip install .``): the build copies ``prompts/`` and ``data/`` into the
   package as ``tracesynth/_shipped/{prompts,data}`` (see :mod:`tracesynth._build`);
2. a source checkout or an editable install: the top-level ``prompts/`` and ``data/`` folders
   next to the ``tracesynth/`` package folder.

This module only locates folders; it does not read, parse or verify what is in them
(:mod:`.prompts` and :mod:`.builtin` do).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from tracesynth.errors import DataError

Kind = Literal["prompts", "data"]
_PACKAGE = Path(__file__).resolve().parent.parent  # the tracesynth/ folder
# a file each folder must hold, so that an unrelated "data/" next to site-packages is never taken
_MARKERS = {"prompts": "boxed_math.txt", "data": "registry.json"}


@cache
def resource_dir(kind: Kind) -> Path:
    """The folder holding the shipped ``prompts`` or ``data``."""
    if kind not in _MARKERS:
        raise ValueError(f"unknown resource kind {kind!r}")
    candidates = (_PACKAGE / "_shipped" / kind, _PACKAGE.parent / kind)
    for path in candidates:
        if (path / _MARKERS[kind]).is_file():
            return path
    where = ", ".join(str(p) for p in candidates)
    raise DataError(f"shipped {kind}/ not found (looked in {where}); reinstall tracesynth")


def prompts_dir() -> Path:
    return resource_dir("prompts")


def data_dir() -> Path:
    return resource_dir("data")


__all__ = ["data_dir", "prompts_dir", "resource_dir"]
