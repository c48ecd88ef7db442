"""The harvest stage: ask the teacher for every pending sample of a recipe (online, batch, export/ingest, retry)."""

from __future__ import annotations

from typing import Any


def harvest(recipe: Any, **kwargs: Any) -> Any:
    """Run (or resume) the harvest; see :func:`tracesynth.stages.harvest.online.harvest`."""
    from tracesynth.stages.harvest.online import harvest as run

    return run(recipe, **kwargs)


__all__ = ["harvest"]
