"""The report stage: report.md, plots and the cost receipt from a run folder (:mod:`.report`, :mod:`.plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_report(run_dir: str | Path, **kwargs: Any) -> Path:
    """Write the report of ``run_dir``; see :func:`tracesynth.stages.report.report.build_report`."""
    from tracesynth.stages.report.report import build_report as run

    return run(run_dir, **kwargs)


__all__ = ["build_report"]
