"""The export stage: traces.jsonl → a Hugging Face dataset with its card (:mod:`.dataset`, :mod:`.card`)."""

from __future__ import annotations

from typing import Any


def export(recipe: Any) -> Any:
    """Export the curated traces; see :func:`tracesynth.stages.export.dataset.export`."""
    from tracesynth.stages.export.dataset import export as run

    return run(recipe)


__all__ = ["export"]
