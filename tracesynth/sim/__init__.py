"""The simulated teacher: an OpenAI-compatible server on 127.0.0.1 that reasons and misbehaves on request.

``SimTeacher`` (thread or same-loop), ``SimProcess`` (child process), ``SimOptions`` (every knob),
``serve`` (the CLI's entry point). Modules: options, tokens, arith, solver, answer_key, engine,
faults, http, server, stream, runner, command. Imported lazily so ``tracesynth --help`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from tracesynth.sim.options import SimOptions

_LAZY = {
    "SimTeacher": "tracesynth.sim.runner",
    "SimProcess": "tracesynth.sim.runner",
    "serve": "tracesynth.sim.runner",
    "Solver": "tracesynth.sim.solver",
}

__all__ = ["SimOptions", "SimProcess", "SimTeacher", "Solver", "serve"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tracesynth.sim' has no attribute {name!r}")
