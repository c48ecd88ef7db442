"""tracesynth: harvest verified reasoning traces from a teacher and distil them into a student.

The public API is exactly what ``__all__`` lists (a test holds it). Records, recipes and errors are
imported eagerly (they are light); stage functions and heavier classes are imported on first use
(:mod:`tracesynth._lazy`), so ``import tracesynth`` never imports torch, transformers or datasets.
The ``TYPE_CHECKING`` block mirrors the lazy names for type checkers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracesynth._lazy import lazy_exports
from tracesynth._version import __version__
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
from tracesynth.rundir.store import JsonlStage, RunStore

if TYPE_CHECKING:
    from tracesynth.accounting.estimate import estimate
    from tracesynth.accounting.receipt import build_receipt
    from tracesynth.decontam.index import decontam_filter
    from tracesynth.pipeline import run
    from tracesynth.rundir.live import live_samples
    from tracesynth.sim import SimTeacher
    from tracesynth.sources.problems import iter_problems
    from tracesynth.sources.prompts import render_messages, template_hash
    from tracesynth.stages.curate import curate
    from tracesynth.stages.curate.stage import CurateResult
    from tracesynth.stages.evaluate import evaluate
    from tracesynth.stages.evaluate.stage import EvalResult
    from tracesynth.stages.export import export
    from tracesynth.stages.export.dataset import ExportResult
    from tracesynth.stages.harvest import (
        batch_status,
        export_batch,
        harvest,
        harvest_batch,
        ingest_results,
        retry_truncated,
    )
    from tracesynth.stages.harvest.result import HarvestResult
    from tracesynth.stages.harvest.result import HarvestResult as BatchHarvestResult
    from tracesynth.stages.report import build_report
    from tracesynth.stages.train import sft
    from tracesynth.stages.train.trainer import SftResult
    from tracesynth.stages.verify import verify
    from tracesynth.teacher.client import TeacherClient

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BatchHarvestResult": "tracesynth.stages.harvest",
        "CurateResult": "tracesynth.stages.curate.stage",
        "EvalResult": "tracesynth.stages.evaluate.stage",
        "ExportResult": "tracesynth.stages.export.dataset",
        "HarvestResult": "tracesynth.stages.harvest.result",
        "SftResult": "tracesynth.stages.train.trainer",
        "SimTeacher": "tracesynth.sim",
        "TeacherClient": "tracesynth.teacher.client",
        "batch_status": "tracesynth.stages.harvest",
        "build_receipt": "tracesynth.accounting.receipt",
        "build_report": "tracesynth.stages.report",
        "curate": "tracesynth.stages.curate",
        "decontam_filter": "tracesynth.decontam.index",
        "estimate": "tracesynth.accounting.estimate",
        "evaluate": "tracesynth.stages.evaluate",
        "export": "tracesynth.stages.export",
        "export_batch": "tracesynth.stages.harvest",
        "harvest": "tracesynth.stages.harvest",
        "harvest_batch": "tracesynth.stages.harvest",
        "ingest_results": "tracesynth.stages.harvest",
        "iter_problems": "tracesynth.sources.problems",
        "live_samples": "tracesynth.rundir.live",
        "render_messages": "tracesynth.sources.prompts",
        "retry_truncated": "tracesynth.stages.harvest",
        "run": "tracesynth.pipeline",
        "sft": "tracesynth.stages.train",
        "template_hash": "tracesynth.sources.prompts",
        "verify": "tracesynth.stages.verify",
    },
)

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
