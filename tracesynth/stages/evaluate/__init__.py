"""The evaluate stage: the student on held-out problems → eval.json (:mod:`.stage`)."""

from __future__ import annotations

from typing import Any


def evaluate(recipe: Any, **kwargs: Any) -> Any:
    """Evaluate the student; see :func:`tracesynth.stages.evaluate.stage.evaluate`."""
    from tracesynth.stages.evaluate.stage import evaluate as run

    return run(recipe, **kwargs)


__all__ = ["evaluate"]
