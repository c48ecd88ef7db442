"""Stages die cleanly: a killed ``verify`` leaves no worker behind, and the next stage is not locked out.

The run folder is built from public records (``ts.Problem`` / ``ts.Sample`` written one JSON line
each). The slow verifier is a plain ``module:function`` on PYTHONPATH (the recipe names it), which
sleeps ``$CHAOS_VERIFY_SLEEP`` seconds per sample and returns a passing outcome by duck typing.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import tracesynth as ts

pytestmark = pytest.mark.chaos

SLOW_VERIFIER = """
import os
import time
from types import SimpleNamespace


def slow(problem, sample, options):
    time.sleep(float(os.environ.get("CHAOS_VERIFY_SLEEP", "0")))
    return SimpleNamespace(status="pass", answer=None, reason="", tag="", score=None, details={})
"""


def _run_folder(kit, tmp_path: Path, n: int, verifiers: list[str]) -> Path:
    """A recipe whose run folder holds ``n`` problems and one correct sample each."""
    run = tmp_path / "run"
    problems, samples = [], []
    for row in kit.arithmetic_rows(n):
        problems.append(ts.Problem(id=row["id"], prompt=row["question"], answer=row["answer"], source="chaos"))
        samples.append(
            ts.Sample(
                id=f"s-{row['id']}",
                problem_id=row["id"],
                index=0,
                model="hostile",
                reasoning="Add the numbers.",
                content=f"The answer is \\boxed{{{row['answer']}}}.",
                finish_reason="stop",
            )
        )
    kit.write_jsonl(run / "problems.jsonl", problems)
    kit.write_jsonl(run / "samples.jsonl", samples)
    kit.write_problems(tmp_path / "problems.jsonl", n)
    return kit.write_recipe(tmp_path, "http://127.0.0.1:9/v1", verify={"verifiers": verifiers})


def _plugin_env(tmp_path: Path, sleep_s: float) -> dict[str, str]:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "chaos_slow_verifier.py").write_text(SLOW_VERIFIER)
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "CHAOS_VERIFY_SLEEP": str(sleep_s)}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_verify_leaves_no_workers_and_the_next_stage_runs(kit, tmp_path, sig):
    recipe = _run_folder(kit, tmp_path, 300, ["chaos_slow_verifier:slow"])
    verdicts = tmp_path / "run" / "verdicts.jsonl"
    proc = kit.start_cli(
        "verify", recipe, "--workers", "2", "--quiet", log_dir=tmp_path / "logs", env=_plugin_env(tmp_path, 0.03)
    )
    workers: set[int] = set()
    found: list[str] = []
    try:
        kit.wait_for(lambda: kit.count_lines(verdicts) > 0, timeout=30, what="verdicts.jsonl to grow")
        workers = kit.wait_for(lambda: kit.children_of(proc.pid), timeout=10, what="verify's worker processes")
        assert kit.count_lines(verdicts) < 300, "verify finished before it was killed; the test proves nothing"
        os.kill(proc.pid, sig)
        proc.wait(15)
        try:
            kit.wait_for(lambda: not any(kit.pid_alive(p) for p in workers), timeout=5, what="workers to exit")
        except AssertionError:
            left = sorted(p for p in workers if kit.pid_alive(p))
            found.append(
                f"{len(left)} of {len(workers)} worker processes (pids {left}) outlived the {sig.name}-ed verify by 5 s"
            )
        again = kit.run_cli("verify", recipe, "--quiet", timeout=60, env=_plugin_env(tmp_path, 0))
        if again.returncode != 0 or "in use by another process" in again.stderr:
            found.append(f"the next `tracesynth verify` exited {again.returncode}: {kit.tail(again.stderr, 1)}")
    finally:
        kit.stop_process(proc)
        for pid in workers:  # orphans of the process this test started, by pid
            if kit.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not found, "; ".join(found)


def test_a_lock_left_by_a_dead_process_does_not_block_the_next_stage(kit, tmp_path):
    recipe = _run_folder(kit, tmp_path, 5, ["math"])
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    dead = pid_max + 1  # no process can have this pid
    (tmp_path / "run" / ".lock").write_text(str(dead))
    proc = kit.run_cli("verify", recipe, "--quiet", timeout=90)
    kit.assert_no_traceback(proc)
    assert proc.returncode == 0, f"verify refused a folder locked by dead pid {dead}: {kit.tail(proc.stderr)}"
    assert kit.count_lines(tmp_path / "run" / "verdicts.jsonl") == 5
    cur = kit.run_cli("curate", recipe, timeout=90)
    assert cur.returncode == 0, f"curate after verify: {kit.tail(cur.stderr)}"
