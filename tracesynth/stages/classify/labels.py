"""The labels of the classify stage as curate reads them: ``{problem id: domain}`` from domains.jsonl.

Light to import (curate imports it). This module reads domains.jsonl; it asks nothing and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from tracesynth.rundir.jsonio import json_lines
from tracesynth.rundir.layout import RunLayout


def domains(run_dir: str | Path) -> dict[str, str]:
    """``{problem id: domain}`` labelled by the classify pass in ``run_dir`` (the MSC title, as s1's
    ``domain`` column); {} when the run has no labels. What curate's diversity selection draws over."""
    out: dict[str, str] = {}
    for row in json_lines(RunLayout(run_dir).domains):
        if isinstance(row.get("id"), str) and isinstance(row.get("domain"), str) and row["domain"]:
            out[row["id"]] = row["domain"]
    return out


__all__ = ["domains"]
