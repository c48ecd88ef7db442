"""Batch harvesting against the simulated teacher's files/batches API, with the official openai client.

Round trip with partial failures, crash safety (kill -9 mid-poll, a crash between "create sent" and
"id written"), expiry, cancel, budget, export → hand-made vLLM output → ingest. 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from harvest_kit import recipe_dict as kit_recipe
from harvest_kit import rows as lines

from tracesynth.config import Recipe
from tracesynth.errors import DataError, TeacherError, UserError
from tracesynth.rundir.store import RunStore
from tracesynth.sim import SimTeacher
from tracesynth.stages.harvest import batch_status, export_batch, harvest, harvest_batch, ingest_results
from tracesynth.stages.harvest.batch.state import BatchState

PRICES = {"input": 1.0, "output": 2.0, "batch_discount": 0.5}


def recipe_dict(tmp: Path, base_url: str, problems: int = 12, **teacher: Any) -> dict[str, Any]:
    """The harvest kit's recipe, in batch mode's terms: quick polls, no concurrency setting."""
    batch = {"poll_s": 0.05, "poll_max_s": 0.2, **teacher.pop("batch", {})}
    data = kit_recipe(tmp, base_url, problems, **{"prices": PRICES, **teacher, "batch": batch})
    for key in ("concurrency", "n", "backoff_max_s", "timeout_s"):
        if key not in teacher:
            data["teacher"].pop(key)
    return data


def make_recipe(tmp: Path, base_url: str, problems: int = 12, **teacher: Any) -> Recipe:
    return Recipe.model_validate(recipe_dict(tmp, base_url, problems, **teacher))


def test_round_trip_with_partial_failures_and_resubmission(tmp_path: Path) -> None:
    with SimTeacher(batch_delay_s=0.15, batch_error_rate=0.3, seed=3) as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=20, batch={"max_requests": 8})
        first = harvest_batch(r, quiet=True)
        assert (first.status, first.submitted, first.new + first.failed) == ("complete", 20, 20)
        assert 0 < first.failed < 20 and first.errors_by_kind == {"server_error": first.failed}
        assert sim.stats()["batches"]["created"] == 3  # 8 + 8 + 4 requests per file
        run = tmp_path / "run"
        samples, failures = lines(run / "samples.jsonl"), lines(run / "failures.jsonl")
        assert len(samples) == first.new and len({s["id"] for s in samples}) == first.new
        assert all(f["error_kind"] == "server_error" and f["metadata"]["batch"].startswith("b") for f in failures)
        for s in samples:  # same normalisation as online, batch price = half the recipe price
            assert s["reasoning"] and "\\boxed{" in s["content"] and s["finish_reason"] == "stop"
            u = s["usage"]
            assert s["cost_usd"] == pytest.approx((u["prompt_tokens"] * 1.0 + u["completion_tokens"] * 2.0) / 1e6 * 0.5)
        # the request body is the online one (model, messages, sampling, seed per index), one sample each
        line = lines(run / "batches" / "b0001.jsonl")[0]
        assert (line["method"], line["url"], line["custom_id"]) == ("POST", "/v1/chat/completions", line["custom_id"])
        assert set(line["body"]) == {"model", "messages", "temperature", "top_p", "max_tokens"}
        summary = json.loads((run / "harvest.json").read_text())
        assert summary["mode"] == "batch" and summary["ledger"]["spent_usd"] == pytest.approx(
            sum(s["cost_usd"] for s in samples)
        )
        assert summary["ledger"]["tokens"]["answer"] + summary["ledger"]["tokens"]["reasoning"] == sum(
            s["usage"]["completion_tokens"] for s in samples
        )

        second = harvest_batch(r, quiet=True)  # only the failed ids are asked again (attempt 2)
        assert second.submitted == first.failed and second.new + second.failed == first.failed
        resubmitted = {e["id"] for e in lines(run / "batches" / "b0004.map.jsonl")}
        assert resubmitted == {f["id"] for f in failures}
        assert {e["attempt"] for e in lines(run / "batches" / "b0004.map.jsonl")} == {2}
        assert sim.stats()["batches"]["created"] == 4
        third = harvest_batch(r, quiet=True)
        assert third.submitted == second.failed
    ids = [s["id"] for s in lines(run / "samples.jsonl")]
    assert len(ids) == len(set(ids))


@pytest.mark.slow
def test_kill_9_while_polling_then_resume_never_resubmits(tmp_path: Path) -> None:
    with SimTeacher(batch_delay_s=1.5) as sim:
        rpath = tmp_path / "recipe.yaml"
        rpath.write_text(yaml.safe_dump(recipe_dict(tmp_path, sim.base_url, problems=10)))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracesynth", "harvest", str(rpath), "--batch", "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        log = tmp_path / "run" / "batches.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and '"created"' not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the batch exists: the next step is polling it
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        assert sim.stats()["batches"]["created"] == 1
        assert not (tmp_path / "run" / "samples.jsonl").exists()
        res = harvest_batch(Recipe.model_validate(yaml.safe_load(rpath.read_text())), quiet=True)
        assert (res.status, res.submitted, res.new) == ("complete", 0, 10)
        assert sim.stats()["batches"]["created"] == 1  # resumed polling the same batch id
    samples = lines(tmp_path / "run" / "samples.jsonl")
    assert len({s["id"] for s in samples}) == len(samples) == 10


class _Crash(BaseException):
    """Stands in for a kill: raised right after the provider made the batch, before its id is logged."""


def test_crash_between_create_and_log_is_reconciled_by_listing(tmp_path: Path, monkeypatch) -> None:
    with SimTeacher(batch_delay_s=0.1) as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=6)
        real = BatchState.record

        def crash_on_created(self: BatchState, event: str, **fields: Any) -> dict[str, Any]:
            if event == "created":
                raise _Crash()
            return real(self, event, **fields)

        monkeypatch.setattr(BatchState, "record", crash_on_created)
        with pytest.raises(_Crash):
            harvest_batch(r, quiet=True)
        monkeypatch.setattr(BatchState, "record", real)
        assert sim.stats()["batches"]["created"] == 1 and sim.stats()["files"]["uploaded"] == 1
        res = harvest_batch(r, quiet=True)  # finds the batch by its metadata instead of creating another
        assert (res.status, res.new, res.submitted) == ("complete", 6, 0)
        assert sim.stats()["batches"]["created"] == 1 and sim.stats()["files"]["uploaded"] == 1
    events = [e["event"] for e in lines(tmp_path / "run" / "batches.jsonl")]
    assert events.count("intent") == 1 and events.count("created") == 1


def test_expired_requests_return_to_pending_and_are_submitted_again(tmp_path: Path) -> None:
    with SimTeacher(batch_delay_s=1.0, batch_expire_s=0.3) as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=10)
        res = harvest_batch(r, quiet=True)
        assert res.status == "complete" and "never ran" in res.message
        assert (res.new, res.failed, res.returned) == (3, 0, 7)  # 30% of the window: the first 3 in file order
        assert sim.stats()["batches"]["expired"] == 1
    assert not (tmp_path / "run" / "failures.jsonl").exists()  # expiry is not the sample's fault
    with SimTeacher(batch_delay_s=0.05) as sim2:
        r2 = r.model_copy(deep=True)
        r2.teacher.base_urls = [sim2.base_url]
        again = harvest_batch(r2, quiet=True)
        assert (again.submitted, again.new, again.status) == (7, 7, "complete")


def test_cancel_keeps_partial_results_and_releases_the_rest(tmp_path: Path) -> None:
    with SimTeacher(batch_delay_s=30) as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=8)
        res = harvest_batch(r, wait=False, quiet=True)
        assert (res.status, res.in_batches) == ("waiting", 8)
        rows = batch_status(r, cancel=True)
        assert [row["status"] for row in rows] == ["cancelling"] and rows[0]["cancelled_now"]
        done = harvest_batch(r, quiet=True)
        assert (done.new, done.returned, done.in_batches, done.submitted) == (0, 8, 0, 0)
        assert sim.stats()["batches"]["cancelled"] == 1
        rows = batch_status(r)
        assert rows[0]["status"] == "cancelled" and rows[0]["ingested"]["missing"] == 8


def test_budget_limits_what_is_submitted(tmp_path: Path) -> None:
    with SimTeacher(batch_delay_s=0.05) as sim:
        # worst case per request ≈ 600 tokens x $100/M (batch half of 200) ≈ $0.06
        r = make_recipe(tmp_path, sim.base_url, problems=10, prices={"input": 100.0, "output": 200.0}, budget_usd=0.25)
        res = harvest_batch(r, quiet=True)
        assert res.status == "budget" and 0 < res.submitted < 10 and res.left_for_budget >= 1
        assert res.spent_usd <= 0.25


def test_export_then_ingest_a_vllm_output_file(tmp_path: Path) -> None:
    r = make_recipe(tmp_path, "http://127.0.0.1:9/v1", problems=7, batch={"max_requests": 3})
    out = tmp_path / "out"
    res = export_batch(r, out)
    assert res.status == "exported" and res.submitted == 7 and len(res.files) == 3
    reqs = [json.loads(x) for f in res.files for x in Path(f).read_text().splitlines()]
    assert [len(Path(f).read_text().splitlines()) for f in res.files] == [3, 3, 1]
    assert all(q["method"] == "POST" and q["url"] == "/v1/chat/completions" for q in reqs)
    assert export_batch(r, tmp_path / "out2").submitted == 7  # exporting reserves nothing: run again, same work

    results = tmp_path / "results.jsonl"  # what `vllm run-batch` writes (R1-distill, no reasoning parser)
    with results.open("w") as fh:
        for k, q in enumerate(reqs):
            if k == 5:
                fh.write(
                    json.dumps(
                        {
                            "id": f"vllm-{k}",
                            "custom_id": q["custom_id"],
                            "response": {"status_code": 400, "request_id": f"vllm-batch-{k}", "body": None},
                            "error": "This model's maximum context length is 4096 tokens.",
                        }
                    )
                    + "\n"
                )
                continue
            body = {
                "id": f"chatcmpl-{k}",
                "object": "chat.completion",
                "created": 0,
                "model": "sim-reasoner",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": f"Add the numbers step by step {k}.\n</think>\n\nThe answer is \\boxed{{{k}}}.",
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
            }
            line = json.dumps(
                {
                    "id": f"vllm-{k}",
                    "custom_id": q["custom_id"],
                    "response": {"status_code": 200, "request_id": f"vllm-batch-{k}", "body": body},
                    "error": None,
                }
            )
            fh.write(line + "\n" if k < 6 else line[:40])  # the last line torn: the run was killed
    got = ingest_results(r, results)
    assert (got.new, got.failed, got.errors_by_kind) == (5, 1, {"bad_request": 1})
    samples = lines(tmp_path / "run" / "samples.jsonl")
    assert all(
        s["reasoning"].startswith("Add the numbers")
        and s["content"].startswith("The answer is")
        and s["metadata"]["flags"] == ["closing_think_only"]
        for s in samples
    )
    assert samples[0]["cost_usd"] == pytest.approx((20 * 1.0 + 30 * 2.0) / 1e6 * 0.5)
    assert "maximum context length" in lines(tmp_path / "run" / "failures.jsonl")[0]["error"]
    again = ingest_results(r, results)  # idempotent
    assert (again.new, again.failed) == (0, 0)
    left = export_batch(r, tmp_path / "out3")
    assert left.submitted == 2  # the failed one and the torn one


def test_oversized_request_and_unknown_results_are_reported(tmp_path: Path) -> None:
    r = make_recipe(tmp_path, "http://127.0.0.1:9/v1", problems=2, batch={"max_bytes": 1024})
    r.prompt.system = "x" * 2000
    with pytest.raises(DataError, match=r"over teacher\.batch\.max_bytes"):
        export_batch(r, tmp_path / "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "s-unknown", "response": null, "error": null}\nnot json\n{"x": 1}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not a JSON result line"):
        ingest_results(make_recipe(tmp_path, "http://127.0.0.1:9/v1", problems=2), bad)


def test_endpoint_without_batch_api_says_what_to_do_instead(tmp_path: Path) -> None:
    with SimTeacher() as sim:
        app = sim.app  # like vLLM's OpenAI server: no files or batches routes
        app.routes = {k: v for k, v in app.routes.items() if not k[1].startswith(("/v1/files", "/v1/batches"))}
        app.patterns.clear()
        r = make_recipe(tmp_path, sim.base_url, problems=2)
        with pytest.raises(TeacherError, match=r"no files/batches API.*--export-batch"):
            harvest_batch(r, quiet=True)


def test_cli_batches_and_option_errors(tmp_path: Path, capsys) -> None:
    from tracesynth.cli import main

    with SimTeacher(batch_delay_s=0.05) as sim:
        rpath = tmp_path / "recipe.yaml"
        rpath.write_text(yaml.safe_dump(recipe_dict(tmp_path, sim.base_url, problems=3, mode="batch")))
        with pytest.raises(SystemExit) as exit_info:
            main(["harvest", str(rpath), "--quiet"])
        assert exit_info.value.code == 0
        assert "harvest (batch) complete: 3 new samples" in capsys.readouterr().err
        with pytest.raises(SystemExit) as exit_info:
            main(["batches", str(rpath)])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and "b0001" in out and "completed" in out and "3 new" in out
        for bad in (["--shard", "0/2"], ["--export-batch", str(tmp_path), "--ingest", str(rpath)]):
            with pytest.raises(SystemExit) as exit_info:
                main(["harvest", str(rpath), *bad])
            assert exit_info.value.code == 2
        assert "error: " in capsys.readouterr().err


def test_combining_flags_is_checked(tmp_path: Path) -> None:
    r = make_recipe(tmp_path, "http://127.0.0.1:9/v1", problems=1)
    with pytest.raises(UserError, match="--wait"):
        harvest(r, retry_truncated=True, wait=False)
    with pytest.raises(UserError, match="--ingest"):
        harvest(r, ingest=tmp_path / "x.jsonl", retry_truncated=True)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_state_log_survives_a_torn_last_line(tmp_path: Path) -> None:
    with RunStore(tmp_path / "run") as store:
        state = BatchState(store)
        state.record("intent", local="b0001", input="batches/b0001.jsonl", map="batches/b0001.map.jsonl", requests=3)
        state.record("created", local="b0001", batch_id="batch_x", status="in_progress")
        token = state.token
    with (tmp_path / "run" / "batches.jsonl").open("a") as fh:
        fh.write('{"event":"status","local":"b0001","sta')  # killed mid-write
    with RunStore(tmp_path / "run") as store:
        state = BatchState(store)
        assert state.token == token and state.records["b0001"].batch_id == "batch_x"
        assert state.records["b0001"].status == "in_progress" and store.recovered
    assert Counter(e["event"] for e in lines(tmp_path / "run" / "batches.jsonl")) == {
        "run": 1,
        "intent": 1,
        "created": 1,
    }


def test_a_batch_the_provider_no_longer_knows_is_released(tmp_path: Path) -> None:
    with SimTeacher(batch_delay_s=30) as gone:
        r = make_recipe(tmp_path, gone.base_url, problems=4)
        assert harvest_batch(r, wait=False, quiet=True).in_batches == 4
    with SimTeacher(batch_delay_s=0.05) as sim:  # another server: batch_sim000001 is unknown here (404)
        r.teacher.base_urls = [sim.base_url]
        lost = harvest_batch(r, quiet=True)
        assert (lost.returned, lost.submitted, lost.in_batches) == (4, 0, 0) and "never ran" in lost.message
        assert [b["status"] for b in lost.batches] == ["lost"]
        again = harvest_batch(r, quiet=True)
        assert (again.submitted, again.new) == (4, 4)
