"""Names a recipe gives for code of its own: a registered name, or ``"package.module:function"``.

Verifiers (``verify.verifiers``) and curation steps (``curate.steps``) are looked up the same way:
first in their registry, then, for a name with a colon, imported on first use and remembered in the
registry (so a custom verifier also resolves inside worker processes). This module imports what
it is asked to; it knows no registry of its own.
"""

from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import TypeVar

T = TypeVar("T")


def lookup(registry: MutableMapping[str, T], name: str) -> T | None:
    """``registry[name]``, else the ``module:function`` it names (imported and remembered), else None."""
    fn = registry.get(name)
    if fn is None and ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            return None
        registry[name] = fn
    return fn


__all__ = ["lookup"]
