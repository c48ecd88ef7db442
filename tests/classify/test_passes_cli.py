"""`tracesynth classify | rewrite RECIPE` and `tracesynth run --only ...` through the real CLI, importing no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harvest_kit import rows, write_problems


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracesynth", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _recipe(tmp: Path) -> Path:
    sim = {"enabled": True, "options": {"seed": 2}}
    recipe = {
        "name": "passes",
        "run_dir": str(tmp / "run"),
        "source": {"kind": "jsonl", "path": str(write_problems(tmp / "p.jsonl", 6))},
        "teacher": {"model": "sim", "api_key_env": None, "prices": {"input": 1, "output": 2}, "sim": sim},
        "verify": {"verifiers": ["math"], "workers": 1},
        "classify": {"enabled": True, "api_key_env": None, "sim": sim, "budget_usd": 5},
        "rewrite": {"enabled": True, "api_key_env": None, "sim": sim, "budget_usd": 5},
    }
    path = tmp / "r.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def test_pass_commands_and_run_only_import_no_torch(tmp_path):
    recipe = _recipe(tmp_path)
    res = _cli("run", str(recipe), "--only", "harvest", "--only", "verify", "--only", "classify", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    run = tmp_path / "run"
    assert len(rows(run / "domains.jsonl")) == 6 and not (run / "rewrites.jsonl").exists()
    assert "classify: complete; 6 new" in res.stderr

    res = _cli("rewrite", str(recipe), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("rewrite: complete;") and len(rows(run / "rewrites.jsonl")) > 0
    again = _cli("classify", str(recipe), cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("classify: nothing; 0 new (6 before)")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["classify"]["status"] == "complete" and manifest["stages"]["rewrite"]["done"] > 0

    off = _cli("classify", str(recipe), "--set", "classify.enabled=false", cwd=tmp_path)
    assert off.returncode == 2 and off.stderr.strip().splitlines()[-1].startswith("error: classify.enabled is false")
    bad = _cli("run", str(recipe), "--only", "relabel", cwd=tmp_path)
    assert bad.returncode == 2 and "classify, rewrite" in bad.stderr

    code = f"""
import sys
from tracesynth.config import load_recipe
from tracesynth.pipeline import run
run(load_recipe({str(recipe)!r}, []), quiet=True, stages=("harvest", "verify", "classify", "rewrite"))
print(sorted(m for m in ("torch", "transformers", "trl", "datasets") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
