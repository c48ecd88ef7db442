"""The curate stage: verified samples → traces.jsonl and curate.json.

``curate(recipe)`` runs the steps of :mod:`tracesynth.stages.curate.stage`; dedup, filters and
selection live beside it. Importing this package is light: datasketch and tokenizers are imported
only by the steps that need them.
"""

from __future__ import annotations

from typing import Any


def curate(recipe: Any) -> Any:
    """Run curation for ``recipe``; see :func:`tracesynth.stages.curate.stage.curate`."""
    from tracesynth.stages.curate.stage import curate as run

    return run(recipe)


__all__ = ["curate"]
