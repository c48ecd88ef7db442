"""Teacher quirks as batch results and online: recorded result files, empty thinking, timeouts, limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo import FIXTURES as TEST_FIXTURES

from tracesynth.accounting.ledger import Ledger
from tracesynth.accounting.prices import Prices
from tracesynth.config import Recipe, TeacherConfig
from tracesynth.records import Problem
from tracesynth.rundir.store import RunStore
from tracesynth.sim import SimTeacher
from tracesynth.stages.harvest import harvest
from tracesynth.stages.harvest.batch.ingest import ingest_file
from tracesynth.stages.harvest.writer import Writer
from tracesynth.stages.verify.verifiers.format import verify_format
from tracesynth.teacher.client import TeacherClient

FIXTURES = TEST_FIXTURES / "batch"


def ingest_fixtures(run: Path) -> tuple[dict[str, dict], list[dict], Ledger, dict[str, int]]:
    entries = {f"CID{i}": {"id": f"s-{i}", "problem_id": f"p{i}", "index": 0, "attempt": 1} for i in range(1, 8)}
    ledger = Ledger()
    counts: dict[str, int] = {}
    with RunStore(run) as store:
        writer = Writer(store, model="teacher", prices=Prices(1.0, 2.0), ledger=ledger, endpoint="file:x")
        for name in ("vllm_run_batch_output.jsonl", "openai_batch_output.jsonl", "openai_batch_error.jsonl"):
            for k, v in ingest_file(writer, FIXTURES / name, entries.get, "ingest-test").items():
                counts[k] = counts.get(k, 0) + v
    samples = {json.loads(x)["id"]: json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()}
    failures = [json.loads(x) for x in (run / "failures.jsonl").read_text().splitlines()]
    return samples, failures, ledger, counts


def test_recorded_batch_results_are_normalised_like_online_answers(tmp_path: Path) -> None:
    samples, failures, ledger, counts = ingest_fixtures(tmp_path / "run")
    assert (counts["new"], counts["failed"], counts["not_run"], counts["truncated"]) == (4, 2, 1, 1)
    r1 = samples["s-1"]  # R1-distill without a reasoning parser: only the closing tag
    assert r1["reasoning"] == "Okay, 2+3 means adding 3 to 2, which gives 5."
    assert r1["content"] == "The answer is \\boxed{5}." and r1["metadata"]["flags"] == ["closing_think_only"]
    assert r1["metadata"]["served_model"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    assert (samples["s-2"]["reasoning"], samples["s-2"]["content"]) == ("7 times 6 is 42.", "\\boxed{42}")
    cut = samples["s-5"]  # o4-mini cut at max_tokens: all reasoning tokens, no answer
    assert cut["finish_reason"] == "length" and cut["usage"]["reasoning_tokens"] == 64
    assert cut["cost_usd"] > 0 and ledger.truncated_usd == pytest.approx(cut["cost_usd"])
    assert ledger.summary()["tokens"]["answer"] == 34 + 15 + 8  # reasoning tokens apart from answer tokens
    kinds = sorted(f["error_kind"] for f in failures)
    assert kinds == ["bad_request", "server_error"]
    assert any("maximum context length" in f["error"] for f in failures)
    assert "s-7" not in samples and all(f["id"] != "s-7" for f in failures)  # expired: pending, not failed


def test_empty_thinking_is_flagged_and_the_format_verifier_drops_it(tmp_path: Path) -> None:
    from tracesynth.records import Sample

    samples, _, _, _ = ingest_fixtures(tmp_path / "run")
    empty = Sample.model_validate(samples["s-3"])
    assert (empty.reasoning, empty.content, empty.metadata["flags"]) == ("", "Paris.", ["empty_think"])
    problem = Problem(id="p3", prompt="Capital of France?", answer="Paris")
    out = verify_format(problem, empty, {})
    assert (out.status, out.tag) == ("fail", "no_reasoning")
    good = Sample.model_validate(samples["s-1"])
    assert verify_format(problem, good, {}).status == "pass"


def test_a_timed_out_request_is_counted_as_possibly_billed(tmp_path: Path) -> None:
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "p0", "problem": "What is 2 + 3?", "answer": "5"}) + "\n")
    with SimTeacher(script=["hang"]) as sim:
        r = Recipe.model_validate(
            {
                "name": "t",
                "run_dir": str(tmp_path / "run"),
                "source": {"kind": "jsonl", "path": str(problems)},
                "teacher": {
                    "model": "sim-reasoner",
                    "base_urls": [sim.base_url],
                    "api_key_env": None,
                    "timeout_s": 0.5,
                    "max_attempts": 2,
                    "backoff_base_s": 0.01,
                    "prices": {"input": 1.0, "output": 2.0},
                    "sampling": {"max_tokens": 1000},
                },
            }
        )
        res = harvest(r, quiet=True)
    assert res.done == 1 and res.possibly_billed_usd > 0  # the hung attempt may have been billed
    summary = json.loads((tmp_path / "run" / "harvest.json").read_text())
    assert summary["ledger"]["possibly_billed_usd"] == pytest.approx(res.possibly_billed_usd)


def test_defaults_suit_reasoning_teachers_and_limits_are_separate_buckets() -> None:
    t = TeacherConfig()
    assert t.timeout_s >= 1200  # long traces take many minutes; overridable with teacher.timeout_s
    flow = TeacherClient.from_config(TeacherConfig(rpm=600, rps=5, input_tpm=100_000, output_tpm=20_000)).flow
    assert set(flow.buckets) == {"rpm", "rps", "input_tpm", "output_tpm"}
    assert flow.buckets["rps"].rate == 5 and flow.buckets["output_tpm"].rate == pytest.approx(20_000 / 60)


def test_progress_lines_count_spend_and_tokens_by_kind() -> None:
    from tracesynth.records import Usage

    led = Ledger()
    led.charge(Usage(prompt_tokens=10, completion_tokens=100, reasoning_tokens=80), 0.5, truncated=True)
    led.charge(Usage(prompt_tokens=10, completion_tokens=50, reasoning_tokens=30), 0.25, retried=True)
    led.reserved_usd += 0.125
    assert led.settle_attempt(0.125, possibly_billed=True) == 0.125 and led.reserved_usd == 0
    line = led.spend_line()
    assert "truncated $0.5000" in line and "failed $0.1250" in line and "retried $0.2500" in line
    assert "reasoning 110" in line and "answer 40" in line
    assert led.summary()["tokens"]["answer"] == 40
