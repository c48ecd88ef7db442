"""Let a stage module be called like its stage function.

``tracesynth.harvest`` is both a module and the function the public API exports under that name.
Importing the module (``import tracesynth.harvest``) rebinds the package attribute to the module, so
``tracesynth.harvest(recipe)`` would stop working depending on import order. Giving the module a
``__call__`` that forwards to the function makes both spellings work whatever was imported first.
This module does nothing else.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, fn: Callable[..., Any]) -> None:
    """Make ``sys.modules[module_name]`` callable, forwarding to ``fn``."""

    class _CallableModule(types.ModuleType):
        __doc__ = sys.modules[module_name].__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
