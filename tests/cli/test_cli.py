"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

import tracesynth


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracesynth", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_version():
    res = run("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"tracesynth {tracesynth.__version__}"


def test_help_does_not_import_torch():
    code = "import sys; from tracesynth.cli import app; import tracesynth; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_recipe_show_applies_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: demo\nteacher: {concurrency: 4}\n")
    res = run("recipe", "show", str(p), "--set", "teacher.concurrency=9", "--set", "teacher.model=sim")
    assert res.returncode == 0, res.stderr
    shown = yaml.safe_load(res.stdout)
    assert shown["name"] == "demo"
    assert shown["teacher"]["concurrency"] == 9
    assert shown["teacher"]["model"] == "sim"


def test_user_error_is_one_line_exit_2_no_traceback(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("teacher:\n  concurrency: 4\n  modle: x\n")
    res = run("recipe", "show", str(p))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {p}:3: teacher.modle: unknown key"
    assert "Traceback" not in res.stderr


def test_debug_shows_traceback(tmp_path):
    res = run("--debug", "recipe", "show", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2
    assert "Traceback" in res.stderr
    assert res.stderr.strip().endswith("recipe file not found")


def test_bad_override_exit_2():
    res = run("recipe", "show", "--set", "teacher.concurrency", "/dev/null")
    assert res.returncode == 2
    assert "expected KEY.PATH=VALUE" in res.stderr


def test_recipe_check_missing_source_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("source: {kind: jsonl, path: nowhere.jsonl}\n")
    res = run("recipe", "check", str(p))
    assert res.returncode == 2
    assert res.stderr.strip() == "error: source.path: nowhere.jsonl: no such file"


def test_unknown_command_is_usage_error():
    res = run("frobnicate")
    assert res.returncode == 2


def test_public_api_all_is_sorted_and_importable():
    assert tracesynth.__all__ == sorted(tracesynth.__all__)
    for name in tracesynth.__all__:
        assert getattr(tracesynth, name) is not None


def test_stage_functions_stay_functions_after_their_packages_are_imported():
    """Importing a stage's package or modules never replaces the public function of the same name."""
    code = (
        "import tracesynth as ts\n"
        "import tracesynth.stages.harvest.online, tracesynth.stages.verify.stage, tracesynth.stages.curate.stage\n"
        "import tracesynth.stages.evaluate.stage, tracesynth.stages.export.dataset, tracesynth.pipeline\n"
        "import types\n"
        "bad = [n for n in ('harvest', 'verify', 'curate', 'evaluate', 'export', 'sft', 'run')"
        " if not isinstance(getattr(ts, n), types.FunctionType)]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_harvest_and_verify_never_import_torch(tmp_path):
    """A machine that only talks to a teacher needs no torch: run both stages and look at sys.modules."""
    code = f"""
import sys
from tracesynth.config import load_recipe
from tracesynth.stages.harvest import harvest
from tracesynth.sim import SimTeacher
from tracesynth.stages.verify import verify
with SimTeacher(seed=1, wrong_rate=0.3) as sim:
    recipe = load_recipe(None, ["run_dir={tmp_path / "run"}", "teacher.base_urls=[" + sim.base_url + "]",
                                "teacher.api_key_env=null", "verify.workers=1",
                                "source={{kind: gym, name: chain_sum, size: 20, seed: 1}}"])
    res = harvest(recipe, quiet=True)
verify(recipe)
print(res.done, sorted(m for m in ("torch", "transformers", "trl") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "20 []"


def test_a_quiet_harvest_only_run_imports_no_training_library(tmp_path):
    """`tracesynth run --only harvest -q` is what a harvest-only install (tracesynth[math]) runs."""
    code = f"""
import sys
from tracesynth.config import load_recipe
from tracesynth.pipeline import run
recipe = load_recipe(None, ["run_dir={tmp_path / "run"}", "teacher.api_key_env=null", "teacher.sim.enabled=true",
                            "source={{kind: gym, name: chain_sum, size: 10, seed: 1}}"])
run(recipe, quiet=True, stages=("harvest",))
print(sorted(m for m in ("torch", "transformers", "trl", "datasets") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_run_with_the_simulated_teacher_starts_exactly_one(tmp_path, monkeypatch):
    from tracesynth.config import load_recipe
    from tracesynth.pipeline import run
    from tracesynth.sim import runner

    started: list[str] = []
    start = runner.SimTeacher.start

    def counting(self):
        out = start(self)
        started.append(self.base_url)
        return out

    monkeypatch.setattr(runner.SimTeacher, "start", counting)
    recipe = load_recipe(
        None,
        [
            f"run_dir={tmp_path / 'run'}",
            "teacher.api_key_env=null",
            "teacher.sim.enabled=true",
            "source={kind: gym, name: chain_sum, size: 5, seed: 1}",
        ],
    )
    run(recipe, quiet=True, stages=("harvest",))
    assert len(started) == 1
    assert sum(1 for _ in (tmp_path / "run" / "samples.jsonl").open()) == 5


def test_the_readmes_weak_model_harvest_runs_as_written_against_a_server_of_your_own(tmp_path, sim_teacher):
    # README "Difficulty filter": an unknown model at your own URL is self-hosted at $0, with a note
    from harvest_kit import write_problems

    sim = sim_teacher()
    pool = write_problems(tmp_path / "p.jsonl", 5)
    common = [
        "--set",
        f"source={{kind: jsonl, path: {pool}}}",  # the 59K pool is on the Hub; the command is the README's
        "--set",
        "teacher.model=Qwen/Qwen2.5-7B-Instruct",
        "--set",
        "teacher.api_key_env=null",
        "--quiet",
    ]
    own = run(
        "harvest",
        "recipes/s1k.yaml",
        "--set",
        f"run_dir={tmp_path / 'weak'}",
        "--set",
        f"teacher.base_urls=[{sim.base_url}]",
        *common,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert own.returncode == 0, own.stderr
    (note,) = [line for line in own.stderr.splitlines() if "self-hosted" in line]
    assert "'Qwen/Qwen2.5-7B-Instruct'" in note and "$0" in note
    # the same model named at a priced provider has no price: refused before any request, one line
    paid = run(
        "harvest",
        "recipes/s1k.yaml",
        "--set",
        f"run_dir={tmp_path / 'paid'}",
        "--set",
        "teacher.base_urls=[https://api.together.xyz/v1]",
        *common,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert paid.returncode == 2 and "no price known for model 'Qwen/Qwen2.5-7B-Instruct'" in paid.stderr
    assert "Traceback" not in paid.stderr and len(paid.stderr.strip().splitlines()) == 1
    assert sim.stats()["routes"].get("/v1/chat/completions") == 5  # only the self-hosted run asked anything
