"""A failed run must say so: one line naming the cause (and the fix), a non-zero exit, an early stop,
and no file claiming success."""

from __future__ import annotations

import json
import os
import re
import signal
import socket

import pytest
from hostile import Hostile

pytestmark = pytest.mark.chaos

CONCURRENCY = 4
EARLY = CONCURRENCY + 4  # "stopped early": at most one wave of requests and a few retries


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _status(run) -> tuple[str | None, str | None]:
    """(harvest.json status, manifest.json stages.harvest.status), None where absent."""
    hj = json.loads((run / "harvest.json").read_text()) if (run / "harvest.json").exists() else {}
    man = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").exists() else {}
    return hj.get("status"), man.get("stages", {}).get("harvest", {}).get("status")


def test_unknown_model_stops_the_harvest_and_names_the_models_the_server_knows(kit, tmp_path):
    with Hostile() as h:
        kit.write_problems(tmp_path / "problems.jsonl", 50)
        recipe = kit.write_recipe(tmp_path, h.base_url, teacher={"model": "hostlie"})
        proc = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
        requests = h.count()
    line = kit.assert_one_line_error(proc)
    assert "hostlie" in line, f"the line does not name the model asked for: {line}"
    assert "hostile" in line.replace("hostlie", ""), f"the line does not list the models the server knows: {line}"
    assert requests <= EARLY, f"{requests} requests for 50 problems to a server that has no such model"


def test_base_url_without_v1_fails_and_suggests_the_v1_url(kit, tmp_path):
    with Hostile() as h:
        kit.write_problems(tmp_path / "problems.jsonl", 50)
        recipe = kit.write_recipe(tmp_path, h.url)  # http://127.0.0.1:PORT, no /v1
        proc = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
        requests = sum(v for k, v in h.snapshot().items() if k.endswith("/chat/completions"))  # probes aside
        suggestion = h.base_url
    line = kit.assert_one_line_error(proc)
    assert suggestion in line, f"the line does not suggest {suggestion}: {line}"
    assert requests <= EARLY, f"{requests} requests for 50 problems to a URL that answers 404 to all"


@pytest.mark.parametrize(
    ("field", "sampling", "reason"),
    [
        ("max_tokens", {"max_tokens": 0}, "max_tokens must be at least 1"),
        ("temperature", {"temperature": -3}, "temperature must be non-negative"),
    ],
    ids=["max_tokens_0", "temperature_-3"],
)
def test_request_the_server_refuses_stops_the_harvest_with_the_servers_reason(kit, tmp_path, field, sampling, reason):
    with Hostile() as h:
        kit.write_problems(tmp_path / "problems.jsonl", 50)
        recipe = kit.write_recipe(tmp_path, h.base_url, teacher={"sampling": sampling})
        proc = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
        requests = h.count()
    line = kit.assert_one_line_error(proc)
    assert field in line, f"the line does not name {field}: {line}"
    # the server's own words, unless the recipe was refused before anything was sent
    assert reason in line or requests == 0, f"the server's reason {reason!r} is not in the line: {line}"
    assert requests <= EARLY, f"{requests} requests for 50 problems, every one refused with 400"


def test_eval_against_an_unreachable_endpoint_fails_and_keeps_the_old_eval_json(kit, tmp_path):
    kit.write_problems(tmp_path / "problems.jsonl", 3)
    kit.write_problems(tmp_path / "eval.jsonl", 3, start=100)
    port = _closed_port()
    recipe = kit.write_recipe(
        tmp_path,
        f"http://127.0.0.1:{_closed_port()}/v1",
        eval={
            "source": {
                "kind": "jsonl",
                "path": str(tmp_path / "eval.jsonl"),
                "columns": {"question": "question", "answer": "answer"},
            },
            "backend": "endpoint",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "student",
            "baseline": False,
        },
    )
    run = tmp_path / "run"
    run.mkdir()
    sentinel = b'{"sentinel": "an earlier, good evaluation"}\n'
    (run / "eval.json").write_bytes(sentinel)
    proc = kit.run_cli("eval", recipe, timeout=90)
    line = kit.assert_one_line_error(proc)
    counts = re.sub(r"\S*[/:]\S*", " ", line)  # paths, URLs and ports aside
    assert re.search(r"\b3\b", counts), f"the line does not say how many items errored (3 of 3): {line}"
    assert (run / "eval.json").read_bytes() == sentinel, "eval.json was rewritten from a run where every item errored"


@pytest.mark.parametrize("earlier", [False, True], ids=["fresh", "after_a_complete_run"])
def test_harvest_killed_mid_run_never_reports_complete(kit, tmp_path, earlier):
    with Hostile(delay_s=0.1) as h:
        recipe = kit.write_recipe(tmp_path, h.base_url)
        samples = tmp_path / "run" / "samples.jsonl"
        before = 0
        if earlier:  # a finished run first: its harvest.json says complete
            kit.write_problems(tmp_path / "problems.jsonl", 4)
            done = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
            assert done.returncode == 0, kit.tail(done.stderr)
            before = kit.count_lines(samples)
        kit.write_problems(tmp_path / "problems.jsonl", 200)
        proc = kit.start_cli("harvest", recipe, "--quiet", log_dir=tmp_path / "logs")
        try:
            kit.wait_for(lambda: kit.count_lines(samples) >= before + 8, timeout=30, what="samples to arrive")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            kit.stop_process(proc)
    assert kit.count_lines(samples) < 204, "the harvest finished before it was killed; the test proves nothing"
    hj, manifest = _status(tmp_path / "run")
    assert hj != "complete", "harvest.json says complete after the harvest was killed mid-run"
    assert manifest != "complete", "manifest.json says the harvest stage is complete after it was killed mid-run"


def test_harvest_stopped_by_an_error_never_reports_complete(kit, tmp_path):
    # row 41 has no question: either a one-line error (and a status that says so) or the row dropped
    rows = [*kit.arithmetic_rows(40), {"id": "empty", "question": "", "answer": "1"}, *kit.arithmetic_rows(4, start=50)]
    with Hostile() as h:
        kit.write_problems(tmp_path / "problems.jsonl", rows=rows)
        recipe = kit.write_recipe(tmp_path, h.base_url)
        proc = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
    kit.assert_no_traceback(proc)
    hj, manifest = _status(tmp_path / "run")
    if proc.returncode == 0:
        assert len(kit.read_jsonl(tmp_path / "run" / "samples.jsonl")) == 44, "exit 0 but not every good row done"
    else:
        assert hj != "complete", f"harvest.json says complete after the harvest failed: {kit.tail(proc.stderr)}"
        assert manifest != "complete", "manifest.json says the harvest is complete after it failed"
