"""`tracesynth harvest` as a real process: wrong key, Ctrl-C / SIGTERM, kill -9 at random points, resume.

The simulated teacher runs inside the harvest process (``teacher.sim.enabled``), so a kill takes
both down — the worst case for the run folder.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow
SECRET = "sk-test-DO-NOT-LEAK-7f3a9c2e51"


def write_recipe(tmp: Path, problems: int, sim: dict[str, Any], **teacher: Any) -> Path:
    src = tmp / "problems.jsonl"
    with src.open("w") as fh:
        for i in range(problems):
            fh.write(
                json.dumps({"id": f"q{i:05d}", "problem": f"What is {i} + {3 * i + 1}?", "answer": str(4 * i + 1)})
                + "\n"
            )
    t = {
        "model": "sim-reasoner",
        "concurrency": 8,
        "n": 2,
        "sampling": {"max_tokens": 400},
        "prices": {"input": 1.0, "output": 2.0},
        "timeout_s": 10,
        "backoff_base_s": 0.01,
        "sim": {"enabled": True, "options": sim},
        **teacher,
    }
    path = tmp / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "proc", "run_dir": str(tmp / "run"), "source": {"kind": "jsonl", "path": str(src)}, "teacher": t}
        )
    )
    return path


def start(recipe: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tracesynth", "harvest", str(recipe), "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def records(path: Path) -> list[dict[str, Any]]:
    """Every line must be a whole JSON object (no torn record survives a reopen)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_lines(path: Path, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {at_least} lines")


def test_wrong_api_key_exits_2_quickly_and_never_leaks_the_key(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path, 50, {"api_key": "sk-the-right-one", "latency": 0.05}, api_key_env="TS_TEST_KEY", concurrency=16
    )
    t0 = time.monotonic()
    proc = start(recipe, env={"TS_TEST_KEY": SECRET})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert time.monotonic() - t0 < 15
    assert "401" in err and "TS_TEST_KEY" in err and "http://127.0.0.1:" in err
    assert err.count("\n") <= 3  # one line, no traceback
    assert SECRET not in out + err
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f
    summary = json.loads((tmp_path / "run" / "harvest.json").read_text())
    assert summary["status"] == "failed" and "401" in summary["message"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_the_run_resumes(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    recipe = write_recipe(tmp_path, 200, {"latency": 0.1}, concurrency=4)
    samples = tmp_path / "run" / "samples.jsonl"
    proc = start(recipe)
    wait_for_lines(samples, 10)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "interrupted" in err and "resume" in err
    summary = json.loads((tmp_path / "run" / "harvest.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == sig.name
    done = records(samples)
    assert 10 <= len(done) < 400 and len({s["id"] for s in done}) == len(done)
    fast = write_recipe(tmp_path, 200, {"latency": 0.0}, concurrency=16)
    again = subprocess.run(
        [sys.executable, "-m", "tracesynth", "harvest", str(fast), "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    final = records(samples)
    assert len(final) == len({s["id"] for s in final}) == 400
    assert {s["id"] for s in done} <= {s["id"] for s in final}


def test_kill_9_at_random_points_then_resume_gives_one_record_per_sample(tmp_path: Path) -> None:
    rng = random.Random(11)
    recipe = write_recipe(tmp_path, 150, {"latency": "uniform:0.05:0.3", "rate_500": 0.05}, concurrency=16)
    run = tmp_path / "run"
    counts = []

    def written() -> int:
        path = run / "samples.jsonl"
        return path.read_bytes().count(b"\n") if path.exists() else 0

    for _ in range(4):
        target = written() + rng.randint(1, 50)  # kill after a random number of new records, mid-harvest
        proc = start(recipe)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and written() < target and proc.poll() is None:
            time.sleep(0.01)
        proc.kill()
        proc.wait(timeout=10)
        counts.append(written())
    assert any(0 < c < 300 for c in counts), counts  # at least one kill landed mid-harvest
    final = subprocess.run(
        [sys.executable, "-m", "tracesynth", "harvest", str(recipe), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr
    samples = records(run / "samples.jsonl")
    ids = [s["id"] for s in samples]
    assert len(ids) == len(set(ids)) == 300
    assert {s["problem_id"] for s in samples} == {p["id"] for p in records(run / "problems.jsonl")}
    assert len(records(run / "problems.jsonl")) == 150
    assert all(f["error"] for f in records(run / "failures.jsonl"))
