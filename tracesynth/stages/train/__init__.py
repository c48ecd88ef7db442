"""The train stage: distil the exported dataset into the student with TRL (:mod:`.sft`, :mod:`.student`).

Importing this package imports nothing heavy; torch, transformers and trl load inside the functions.
"""

from __future__ import annotations

from typing import Any


def sft(recipe: Any, **kwargs: Any) -> Any:
    """Train the student; see :func:`tracesynth.stages.train.trainer.sft`."""
    from tracesynth.stages.train.trainer import sft as run

    return run(recipe, **kwargs)


__all__ = ["sft"]
