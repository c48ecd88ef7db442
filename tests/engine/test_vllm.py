"""The real engine in the loop: a tiny trained student served by vLLM (CPU build, .venv-vllm) as a teacher,
as a batch engine (run_batch), and as the eval backend — and `tracesynth serve` itself.

These tests need the vLLM environment (`make vllm`; CI builds it). Without it they FAIL, naming the
fix: a missing engine is never a silent skip. Deselect them knowingly with ``-m "not vllm"``.
One server on the trained student is shared by the module; the tests that start or kill servers
(eval, serve, run_batch, the killed server) start their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from distill_kit import make_dataset, problems, recipe_for, write_problems
from harvest_kit import rows

from tracesynth.config import Recipe
from tracesynth.engine.vllm import VllmServer, run_batch_command, vllm_python

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine() -> str:
    py = vllm_python()
    if py is None:
        pytest.fail("no vLLM environment (.venv-vllm): run `make vllm`; to skip these tests on purpose: -m 'not vllm'")
    return py


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, engine: str) -> tuple[Path, list]:
    """The default tiny student trained on 2-digit + 1-digit addition traces (600 steps, about a minute)."""
    from tracesynth.stages.train.trainer import sft

    run = tmp_path_factory.mktemp("vllm") / "run"
    recipe = recipe_for(run, "sft.max_steps=600")
    train = problems(400, digits=2, digits_b=1, seed=11)
    make_dataset(recipe, train)
    sft(recipe)
    seen = {p.prompt for p in train}
    return run, [p for p in problems(90, digits=2, digits_b=1, seed=12, prefix="h") if p.prompt not in seen][:60]


@pytest.fixture(scope="module")
def served(trained: tuple[Path, list]):
    run, _ = trained
    with VllmServer(run / "student", served_name="student", log_path=run.parent / "vllm-shared.log") as server:
        yield server


def teacher_recipe(tmp: Path, base_url: str, probs: list, **teacher: object) -> Recipe:
    src = write_problems(tmp / "asked.jsonl", probs)
    t = {
        "model": "student",
        "base_urls": [base_url],
        "api_key_env": None,
        "concurrency": 8,
        "prices": None,
        "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 160},
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "timeout_s": 60,
        **teacher,
    }
    return Recipe.model_validate(
        {
            "name": "from-student",
            "run_dir": str(tmp / "harvest"),
            "teacher": t,
            "source": {"kind": "jsonl", "path": str(src)},
            "verify": {"verifiers": ["math"], "workers": 1},
            "curate": {"decontam": {"enabled": False}},
        }
    )


def test_harvest_online_from_a_vllm_served_model_with_the_reasoning_parser(served, trained, tmp_path) -> None:
    from tracesynth.stages.harvest import harvest

    _, held_out = trained
    res = harvest(teacher_recipe(tmp_path, served.base_url, held_out[:30]), quiet=True)
    assert (res.status, res.done, res.failed) == ("complete", 30, 0)
    samples = rows(tmp_path / "harvest" / "samples.jsonl")
    # the deepseek_r1 parser puts the thinking in message.reasoning: split out of the content
    assert all(s["reasoning"] and "<think>" not in s["content"] and "</think>" not in s["content"] for s in samples)
    answered = sum("\\boxed" in s["content"] for s in samples)
    assert answered >= 24, answered  # a tiny student sometimes ends its turn inside the thinking
    assert all(s["usage"]["completion_tokens"] > 0 and not s["metadata"].get("flags") for s in samples)
    assert res.spent_usd == 0.0  # a model of your own at a URL of your own: self-hosted, $0


def test_the_student_as_a_teacher_verifies_as_well_as_its_eval_says(served, trained, tmp_path) -> None:
    """Distil from your own model: its harvested traces pass verification at the rate eval measures."""
    from tracesynth.stages.evaluate import evaluate
    from tracesynth.stages.harvest import harvest
    from tracesynth.stages.verify import verify

    run, held_out = trained
    recipe = teacher_recipe(tmp_path, served.base_url, held_out)
    harvest(recipe, quiet=True)
    v = verify(recipe, workers=1)
    traced = v.kept / v.samples
    eval_file = write_problems(tmp_path / "eval.jsonl", held_out)
    ev = recipe_for(
        run,
        f"eval.source={{kind: jsonl, path: {eval_file}}}",
        "eval.max_new_tokens=160",
        "eval.backend=endpoint",
        f"eval.base_url={served.base_url}",
        "eval.model=student",
    )
    block = evaluate(ev).blocks["after"]
    lo, hi = block["ci"]
    assert block["n_problems"] == 60 and lo <= traced <= hi, (traced, block["pass@1"], block["ci"])
    assert traced >= 0.5  # the student learned the task: its traces are worth harvesting


def test_export_batch_then_a_real_run_batch_then_ingest_exactly_once(trained, tmp_path, engine) -> None:
    from tracesynth.stages.harvest import harvest

    run, held_out = trained
    recipe = teacher_recipe(tmp_path, "http://127.0.0.1:9/v1", held_out[:12])
    out = harvest(recipe, export_dir=tmp_path / "batch")
    assert (out.status, out.submitted, len(out.files)) == ("exported", 12, 1)
    results = tmp_path / "results.jsonl"
    cmd = run_batch_command(str(run / "student"), out.files[0], str(results), served_name="student")
    from tracesynth.engine.vllm import engine_env

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=engine_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    first = harvest(recipe, ingest=results)
    again = harvest(recipe, ingest=results)
    assert (first.status, first.new, first.failed) == ("ingested", 12, 0)
    assert (again.new, again.failed) == (0, 0)  # the same file twice adds nothing
    samples = rows(tmp_path / "harvest" / "samples.jsonl")
    assert len({s["id"] for s in samples}) == 12 and all(s["reasoning"] for s in samples)
    assert all(s["usage"]["reasoning_tokens"] > 0 for s in samples)  # run-batch reports them


def test_eval_backend_vllm_end_to_end_with_thinking_caps_agrees_with_local_generation(trained, tmp_path) -> None:
    """Greedy answers through vLLM (fp32) and through transformers' generate are the same, item by item."""
    from tracesynth.stages.evaluate import evaluate

    run, held_out = trained
    eval_file = write_problems(tmp_path / "eval.jsonl", held_out)
    sets = [f"eval.source={{kind: jsonl, path: {eval_file}}}", "eval.max_new_tokens=160", "eval.thinking_caps=[8, 64]"]
    t0 = time.perf_counter()
    local = evaluate(recipe_for(run, *sets, "eval.backend=local"), label="local")
    local_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    served = evaluate(recipe_for(run, *sets, "eval.backend=vllm"), label="vllm")
    vllm_s = time.perf_counter() - t0
    a, b = local.blocks["local"], served.blocks["vllm"]
    assert b["protocol"]["backend"] == "vllm" and b["n_problems"] == a["n_problems"] == 60
    items = [json.loads(x) for x in (run / "eval_items.jsonl").open()]

    def answers(label: str, mode: str) -> dict[tuple[str, int | None], str | None]:
        return {
            (r["problem_id"], r["thinking_cap"]): (r["verdicts"][0]["answer"] if r["verdicts"] else None)
            for r in items
            if r["label"] == label and r["mode"] == mode
        }

    for mode in ("plain", "cap"):
        x, y = answers("local", mode), answers("vllm", mode)
        same = sum(x[k] == y.get(k) for k in x) / len(x)
        # fp32 on both sides: identical greedy tokens measured; 2% allows one item in 60 to differ
        # by a near-tie of two logits summed in another order
        assert same >= 0.98, (mode, same)
    caps = {row["thinking_cap"]: row for row in b["thinking_caps"]}
    assert caps[8]["forced_rate"] == 1.0 and caps[8]["mean_thinking_tokens"] <= 8
    assert abs(a["pass@1"] - b["pass@1"]) <= 0.02
    print(json.dumps({"eval_wall_s": {"local": round(local_s, 1), "vllm_with_start": round(vllm_s, 1)}}))


def test_tracesynth_serve_starts_prints_its_url_and_stops_on_ctrl_c(trained, engine) -> None:
    run, _ = trained
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracesynth", "serve", str(run / "student"), "--name", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""  # printed once the server answers /health
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url + (
            proc.stderr.read() if proc.stderr else ""
        )
        with urllib.request.urlopen(url + "/models", timeout=30) as r:
            assert [m["id"] for m in json.load(r)["data"]] == ["tiny"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_a_server_killed_mid_harvest_is_resumed_without_loss(trained, tmp_path) -> None:
    from tracesynth.errors import TeacherError
    from tracesynth.stages.harvest import harvest

    run, _ = trained
    probs = problems(150, digits=2, digits_b=1, seed=21, prefix="k")
    server = VllmServer(run / "student", served_name="student", log_path=tmp_path / "vllm-1.log").start()
    port = server.port
    recipe = teacher_recipe(tmp_path, server.base_url, probs, concurrency=4, max_attempts=3)
    samples = tmp_path / "harvest" / "samples.jsonl"

    def kill_when_some_arrived() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(rows(samples)) < 15:
            time.sleep(0.05)
        os.killpg(server.proc.pid, signal.SIGKILL)  # the whole server, engine processes included

    killer = threading.Thread(target=kill_when_some_arrived)
    killer.start()
    try:
        with pytest.raises(TeacherError):
            harvest(recipe, quiet=True)
    finally:
        killer.join()
        server.stop()
    first = rows(samples)
    assert 15 <= len(first) < 150
    with VllmServer(run / "student", served_name="student", port=port, log_path=tmp_path / "vllm-2.log"):
        res = harvest(recipe, quiet=True)
    assert res.status == "complete"
    final = rows(samples)
    assert len(final) == len({s["id"] for s in final}) == 150  # nothing lost, nothing asked twice
    assert {s["id"] for s in first} <= {s["id"] for s in final}
