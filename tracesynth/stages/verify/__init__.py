"""The verify stage: samples → verdicts.jsonl and verify.json (:mod:`.stage`), verifiers in :mod:`.verifiers`.

The registry of verifiers, ``score`` and the keep policies are in :mod:`.registry`.
"""

from __future__ import annotations

from typing import Any


def verify(recipe: Any, **kwargs: Any) -> Any:
    """Run the verify stage; see :func:`tracesynth.stages.verify.stage.verify`."""
    from tracesynth.stages.verify.stage import verify as run

    return run(recipe, **kwargs)


__all__ = ["verify"]
