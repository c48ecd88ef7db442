"""The public API is exactly what tracesynth exports: a list held here, every name resolving, light to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tracesynth

PUBLIC = {
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
}


def test_the_exported_list_is_the_public_api() -> None:
    assert set(tracesynth.__all__) == PUBLIC
    assert len(tracesynth.__all__) == len(PUBLIC)  # no name twice


def test_every_public_name_resolves() -> None:
    for name in sorted(PUBLIC):
        assert getattr(tracesynth, name) is not None, name
    assert tracesynth.BatchHarvestResult is tracesynth.HarvestResult  # one result model for every harvest mode


def test_the_type_checking_mirror_names_every_lazy_export() -> None:
    """Type checkers read the TYPE_CHECKING block; it must import every name the lazy map serves."""
    tree = ast.parse(Path(tracesynth.__file__).read_text())
    mirrored: set[str] = set()
    lazy: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom):
                    mirrored |= {a.asname or a.name for a in imp.names}
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "lazy_exports":
            lazy |= {k.value for k in node.args[1].keys if isinstance(k, ast.Constant)}  # type: ignore[attr-defined]
    assert lazy and lazy == mirrored


def test_importing_tracesynth_imports_no_heavy_library() -> None:
    code = (
        "import sys, tracesynth; print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets', 'aiohttp')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
