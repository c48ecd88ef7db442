"""The one lazy-export helper: a package names what it exports and where each name lives.

    __getattr__, __dir__ = lazy_exports(__name__, {"harvest": "tracesynth.stages.harvest", ...})

A name is imported from its module on first access and cached in the package namespace, so
``import tracesynth`` stays light (no torch, transformers or datasets). Packages that use it keep
a ``TYPE_CHECKING`` block importing the same names, so type checkers and IDEs see the real API.
This module imports nothing of tracesynth.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` exporting ``names`` (name -> defining module)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
