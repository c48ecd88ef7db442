"""tracesynth: harvest verified reasoning traces from a teacher and distil them into a student.

The public API is what ``__all__`` lists. Records and recipes are imported eagerly (they are
light); stage functions are imported on first use, so ``import tracesynth`` never imports
torch, transformers or datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from tracesynth.config import Recipe, load_recipe
from tracesynth.errors import (
    AuthError,
    BudgetExceeded,
    ConfigError,
    DataError,
    RunLockedError,
    SourceError,
    StoreError,
    TeacherError,
    TemplateError,
    TracesynthError,
    UserError,
    VerifierError,
)
from tracesynth.records import Problem, Sample, Trace, Usage, Verdict
from tracesynth.store import JsonlStage, RunStore

# name -> module that defines it; imported lazily on first attribute access
_LAZY = {
    "BatchHarvestResult": "tracesynth.batch.run",
    "CurateResult": "tracesynth.curate.stage",
    "EvalResult": "tracesynth.evaluate",
    "ExportResult": "tracesynth.dataset",
    "HarvestResult": "tracesynth.harvest",
    "SftResult": "tracesynth.train.sft",
    "SimTeacher": "tracesynth.sim",
    "TeacherClient": "tracesynth.teacher.client",
    "batch_status": "tracesynth.batch.stage",
    "build_receipt": "tracesynth.receipt",
    "build_report": "tracesynth.report",
    "curate": "tracesynth.curate.stage",
    "decontam_filter": "tracesynth.curate.decontam",
    "estimate": "tracesynth.cost",
    "evaluate": "tracesynth.evaluate",
    "export": "tracesynth.dataset",
    "export_batch": "tracesynth.batch.stage",
    "harvest": "tracesynth.harvest",
    "harvest_batch": "tracesynth.batch.stage",
    "ingest_results": "tracesynth.batch.stage",
    "iter_problems": "tracesynth.sources",
    "live_samples": "tracesynth.superseded",
    "render_messages": "tracesynth.prompts",
    "retry_truncated": "tracesynth.truncated",
    "run": "tracesynth.pipeline",
    "sft": "tracesynth.train.sft",
    "template_hash": "tracesynth.prompts",
    "verify": "tracesynth.verify",
}

__all__ = [
    "AuthError",
    "BatchHarvestResult",
    "BudgetExceeded",
    "ConfigError",
    "CurateResult",
    "DataError",
    "EvalResult",
    "ExportResult",
    "HarvestResult",
    "JsonlStage",
    "Problem",
    "Recipe",
    "RunLockedError",
    "RunStore",
    "Sample",
    "SftResult",
    "SimTeacher",
    "SourceError",
    "StoreError",
    "TeacherClient",
    "TeacherError",
    "TemplateError",
    "Trace",
    "TracesynthError",
    "Usage",
    "UserError",
    "Verdict",
    "VerifierError",
    "__version__",
    "batch_status",
    "build_receipt",
    "build_report",
    "curate",
    "decontam_filter",
    "estimate",
    "evaluate",
    "export",
    "export_batch",
    "harvest",
    "harvest_batch",
    "ingest_results",
    "iter_problems",
    "live_samples",
    "load_recipe",
    "render_messages",
    "retry_truncated",
    "run",
    "sft",
    "template_hash",
    "verify",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tracesynth' has no attribute {name!r}")
