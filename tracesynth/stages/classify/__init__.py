"""The classify stage (s1's MSC domain labels): :func:`classify` asks, :func:`domains` is what curate reads.

Light to import (no torch, no datasets): the harvest-only install runs it.
"""

from __future__ import annotations

from typing import Any

from tracesynth.stages.classify.labels import domains


def classify(recipe: Any) -> Any:
    """Run the classify pass; see :func:`tracesynth.stages.classify.stage.classify`."""
    from tracesynth.stages.classify.stage import classify as run

    return run(recipe)


__all__ = ["classify", "domains"]
