"""The rewrite stage (Sky-T1's reformatting of kept traces): :mod:`.stage` asks, :mod:`.apply` is what export reads.

Light to import (no torch, no datasets): the harvest-only install runs it.
"""

from __future__ import annotations

from typing import Any

from tracesynth.stages.rewrite.apply import rewrite_message, rewrites, with_rewrites


def rewrite(recipe: Any) -> Any:
    """Run the rewrite pass; see :func:`tracesynth.stages.rewrite.stage.rewrite`."""
    from tracesynth.stages.rewrite.stage import rewrite as run

    return run(recipe)


__all__ = ["rewrite", "rewrite_message", "rewrites", "with_rewrites"]
