"""The harvest engine against the simulated teacher: resume, item errors, n, budget, shards, faults."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harvest_kit import make_recipe
from harvest_kit import rows as lines

from tracesynth.errors import ConfigError
from tracesynth.sim import SimTeacher
from tracesynth.stages.harvest import harvest
from tracesynth.stages.harvest.shards import in_shard, merge


def test_harvest_then_resume_pays_nothing_twice(tmp_path: Path) -> None:
    with SimTeacher() as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=15, n=2)
        res = harvest(r)
        assert (res.status, res.new, res.done, res.samples_expected, res.failed) == ("complete", 30, 30, 30, 0)
        before = sim.stats()["requests"]
        again = harvest(r)
        assert (again.new, again.done, again.requests, again.run_spent_usd) == (0, 30, 0, 0.0)
        assert sim.stats()["requests"] == before == 30
    run = tmp_path / "run"
    samples = lines(run / "samples.jsonl")
    assert len(samples) == len({s["id"] for s in samples}) == 30
    assert sorted(Counter(s["index"] for s in samples).items()) == [(0, 15), (1, 15)]
    assert all(s["reasoning"] and s["content"].endswith("}.") and s["cost_usd"] > 0 for s in samples)
    assert len(lines(run / "problems.jsonl")) == 15
    summary = json.loads((run / "harvest.json").read_text())
    assert summary["counts"]["done_total"] == 30 and summary["status"] == "complete"
    assert summary["ledger"]["spent_usd"] == pytest.approx(sum(s["cost_usd"] for s in samples))
    # the ledger is the run folder's (cumulative over resumes); the second run added nothing to it
    assert summary["ledger"]["tokens"]["completion"] == sum(s["usage"]["completion_tokens"] for s in samples)
    assert res.spent_usd == pytest.approx(summary["ledger"]["spent_usd"])


def test_item_errors_are_kept_and_retried_on_resume_up_to_the_limit(tmp_path: Path) -> None:
    with SimTeacher(script=["500"] * 4) as sim:  # max_attempts=1: the first 4 requests become item errors
        r = make_recipe(tmp_path, sim.base_url, problems=10, max_attempts=1, item_retries=1, concurrency=1)
        first = harvest(r)
        assert (first.new, first.failed, first.errors_by_kind) == (6, 4, {"server_error": 4})
        second = harvest(r)  # the 4 failed ids are asked again (attempt 2) and now succeed
        assert (second.new, second.failed, second.done) == (4, 0, 10)
    failures = lines(tmp_path / "run" / "failures.jsonl")
    assert len(failures) == 4 and all(f["error_kind"] == "server_error" and "500" in f["error"] for f in failures)
    retried = {s["id"]: s["attempt"] for s in lines(tmp_path / "run" / "samples.jsonl") if s["attempt"] > 1}
    assert set(retried) == {f["id"] for f in failures} and set(retried.values()) == {2}


def test_item_retry_limit_gives_up(tmp_path: Path) -> None:
    from tracesynth.errors import TeacherError

    with SimTeacher(strict_model=True) as sim:  # 404 for every request: a permanent item error
        r = make_recipe(tmp_path, sim.base_url, problems=3, model="unknown-model", item_retries=1)
        for _ in range(2):  # one retry allowed; each run says why every request failed
            with pytest.raises(TeacherError, match="the server knows models: sim-reasoner"):
                harvest(r)
        third = harvest(r)
        assert (third.status, third.failed, third.gave_up, third.requests) == ("failed", 0, 3, 0)
        assert third.exit_code == 1
    kinds = Counter((f["error_kind"], f["attempt"]) for f in lines(tmp_path / "run" / "failures.jsonl"))
    assert kinds == {("not_found", 1): 3, ("not_found", 2): 3}


def test_api_n_asks_once_per_problem(tmp_path: Path) -> None:
    with SimTeacher() as sim:
        res = harvest(make_recipe(tmp_path, sim.base_url, problems=6, n=3, api_n=True))
    assert (res.new, res.requests) == (18, 6)
    samples = lines(tmp_path / "run" / "samples.jsonl")
    by_problem = Counter(s["problem_id"] for s in samples)
    assert set(by_problem.values()) == {3}
    assert len({s["id"] for s in samples}) == 18


def test_budget_cap_stops_cleanly_and_resumes_with_a_bigger_budget(tmp_path: Path) -> None:
    with SimTeacher(latency=0.02) as sim:
        # worst case per request ~ 600 tokens x $200/M ≈ $0.12; actual answers are ~100-200 tokens
        r = make_recipe(
            tmp_path,
            sim.base_url,
            problems=40,
            prices={"input": 100.0, "output": 200.0},
            budget_usd=1.0,
            concurrency=16,
        )
        res = harvest(r)
        assert res.status == "budget" and "budget $1 reached" in res.message and res.exit_code == 0
        assert res.spent_usd + res.possibly_billed_usd <= 1.0
        assert 0 < res.done < 40 and res.pending > 0
        r2 = r.model_copy(deep=True)
        r2.teacher.budget_usd = 100.0
        more = harvest(r2)
        assert more.status == "complete" and more.done == 40 and more.new == 40 - res.done
    costs = [s["cost_usd"] for s in lines(tmp_path / "run" / "samples.jsonl")]
    assert sum(costs) == pytest.approx(more.spent_usd)


def test_budget_needs_prices_of_a_model_at_a_provider(tmp_path: Path) -> None:
    r = make_recipe(
        tmp_path, "https://api.openai.com/v1", problems=1, model="not-in-the-table", prices=None, budget_usd=5.0
    )
    with pytest.raises(ConfigError, match="no price known for model 'not-in-the-table'"):
        harvest(r)
    assert not (tmp_path / "run" / "samples.jsonl").exists()


def test_an_unknown_model_at_a_url_of_your_own_is_self_hosted_at_zero_cost(tmp_path: Path, capsys) -> None:
    with SimTeacher() as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=3, model="sim-reasoner", prices=None, budget_usd=5.0)
        res = harvest(r)
    assert (res.status, res.done, res.spent_usd) == ("complete", 3, 0.0)
    assert "self-hosted" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "harvest.json").read_text())["prices"]["self_hosted"] is True
    from tracesynth.accounting.receipt import build_receipt

    (note,) = [n for n in build_receipt(tmp_path / "run").notes if "$0" in n]
    assert "self-hosted: 'sim-reasoner'" in note and sim.base_url in note


def test_mixed_faults_end_in_samples_or_reasoned_item_errors(tmp_path: Path) -> None:
    faults = {
        "rate_429": 0.1,
        "rate_500": 0.05,
        "rate_502": 0.05,
        "rate_503": 0.05,
        "rate_hang": 0.03,
        "rate_drop_body": 0.05,
        "rate_malformed": 0.05,
        "rate_empty_choices": 0.05,
    }
    with SimTeacher(seed=5, retry_after_s=0.05, **faults) as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=60, timeout_s=0.5, max_attempts=4, concurrency=16)
        res = harvest(r)
    assert res.status == "complete"
    run = tmp_path / "run"
    ok = {s["id"] for s in lines(run / "samples.jsonl")}
    failed = lines(run / "failures.jsonl")
    assert len(ok) == len(lines(run / "samples.jsonl"))  # no duplicate
    assert all(f["error"] and f["error_kind"] and f["id"] not in ok for f in failed)
    assert len(ok) + len({f["id"] for f in failed}) == 60
    summary = json.loads((run / "harvest.json").read_text())
    assert sum(summary["retries_by_kind"].values()) > 0  # faults were seen and retried


def test_shards_split_deterministically_and_merge_is_idempotent(tmp_path: Path) -> None:
    with SimTeacher() as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=24)
        a = harvest(r, shard="0/2")
        b = harvest(r, shard=(1, 2))
    assert a.done + b.done == 24 and a.done > 0 and b.done > 0
    run = tmp_path / "run"
    shard0 = {p["id"] for p in lines(run / "shards" / "0-of-2" / "problems.jsonl")}
    assert all(in_shard(pid, (0, 2)) for pid in shard0)
    first = merge(run)
    assert first.added["samples"] == 24 and first.added["problems"] == 24
    assert merge(run).added == {"problems": 0, "samples": 0, "failures": 0, "verdicts": 0}
    assert json.loads((run / "harvest.json").read_text())["counts"]["done_total"] == 24


def test_429_burst_backs_off_then_recovers_to_full_concurrency(tmp_path: Path) -> None:
    with SimTeacher(script=["429"] * 12, retry_after_s=0.05) as sim:
        res = harvest(make_recipe(tmp_path, sim.base_url, problems=40, concurrency=8))
    assert res.status == "complete" and res.done == 40 and res.failed == 0
    summary = json.loads((tmp_path / "run" / "harvest.json").read_text())
    assert summary["retries_by_kind"]["rate_limited"] == 12
    assert summary["flow"]["decreases"] >= 1  # AIMD backed off ...
    assert summary["flow"]["concurrency"] == 8  # ... and came back to full speed
    assert min(p["concurrency"] for p in summary["timeline"]) <= 8


def test_ratelimit_headers_are_learned(tmp_path: Path) -> None:
    with SimTeacher(rpm=6000, tpm=10_000_000) as sim:
        harvest(make_recipe(tmp_path, sim.base_url, problems=5))
    flow = json.loads((tmp_path / "run" / "harvest.json").read_text())["flow"]
    assert flow["learned_rpm"] == 6000 and flow["learned_tpm"] == 10_000_000


def test_truncated_samples_are_kept_and_counted_and_quiet_mode_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SimTeacher() as sim:
        res = harvest(make_recipe(tmp_path, sim.base_url, problems=4, sampling={"max_tokens": 20}), quiet=True)
    assert res.truncated == 4 and res.done == 4
    samples = lines(tmp_path / "run" / "samples.jsonl")
    assert all(s["finish_reason"] == "length" and s["usage"]["completion_tokens"] <= 20 for s in samples)
    assert json.loads((tmp_path / "run" / "harvest.json").read_text())["ledger"]["truncated_usd"] > 0
    assert "harvest: 4/4 samples" in capsys.readouterr().err


def test_unreachable_teacher_stops_the_run_instead_of_failing_every_item(tmp_path: Path) -> None:
    import socket

    from tracesynth.errors import TeacherError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    r = make_recipe(tmp_path, dead, problems=200, max_attempts=2, concurrency=4)
    with pytest.raises(TeacherError, match="looks down"):
        harvest(r)
    failures = lines(tmp_path / "run" / "failures.jsonl")
    assert 10 <= len(failures) < 30 and {f["error_kind"] for f in failures} == {"connection"}
    assert json.loads((tmp_path / "run" / "harvest.json").read_text())["status"] == "failed"


def test_prior_spend_is_read_from_the_cost_key_not_from_text(tmp_path: Path) -> None:
    from tracesynth.accounting.spend import scan_spend
    from tracesynth.records import Sample, Usage

    decoy = 'x "cost_usd":99, "usage":{"prompt_tokens":7}, "finish_reason":"length" y'
    rows = [
        Sample(
            id=f"s{i}",
            problem_id="p",
            index=i,
            model="m",
            reasoning=decoy,
            content=decoy,
            cost_usd=0.25 * i,
            usage=Usage(prompt_tokens=3),
            metadata={"cost_usd": 7},
        )
        for i in range(4)
    ]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(r.model_dump_json() + "\n" for r in rows) + '{"id": "torn", "cost_usd": 5')
    failures = tmp_path / "failures.jsonl"
    failures.write_text(
        Sample(
            id="f",
            problem_id="p",
            index=0,
            model="m",
            error="x",
            error_kind="timeout",
            metadata={"possibly_billed_usd": 0.5},
        ).model_dump_json()
        + "\n"
    )
    spend = scan_spend(tmp_path)
    assert (spend.spent_usd, spend.possibly_billed_usd, dict(spend.failures_by_id)) == (1.5, 0.5, {"f": 1})
    assert (spend.tokens.prompt, spend.truncated, spend.complete) == (12, 0, 4)


def test_endpoint_ignoring_n_gets_the_rest_asked_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracesynth.teacher.client as client_mod

    real = client_mod.parse_chat

    def only_first(body: Any) -> Any:  # an endpoint that ignores `n` and returns one choice
        choices, usage, model = real(body)
        return choices[:1], usage, model

    monkeypatch.setattr(client_mod, "parse_chat", only_first)
    with SimTeacher() as sim:
        res = harvest(make_recipe(tmp_path, sim.base_url, problems=3, n=3, api_n=True))
    assert (res.done, res.requests, res.pending) == (9, 3 + 6, 0)
    samples = lines(tmp_path / "run" / "samples.jsonl")
    assert sorted(Counter(s["index"] for s in samples).values()) == [3, 3, 3]


def test_merge_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tracesynth.cli import main

    with SimTeacher() as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=6)
        for i in range(3):
            harvest(r, shard=f"{i}/3")
    with pytest.raises(SystemExit) as info:
        main(["merge", str(tmp_path / "run")])
    assert info.value.code == 0
    assert "merged 3 shards" in capsys.readouterr().out
    assert len(lines(tmp_path / "run" / "samples.jsonl")) == 6
    with pytest.raises(SystemExit) as info:
        main(["merge", str(tmp_path / "nowhere")])
    assert info.value.code == 2 and "no shard folders" in capsys.readouterr().err


def test_eval_set_problems_are_decontaminated_before_any_request(tmp_path: Path) -> None:
    from tracesynth.sources.builtin import registry, verified_path

    gsm8k_test = next(verified_path(d) for d in registry() if (d.name, d.split) == ("gsm8k", "test"))
    leaked = json.loads(gsm8k_test.read_text().splitlines()[0])
    with SimTeacher() as sim:
        r = make_recipe(tmp_path, sim.base_url, problems=5)
        with (tmp_path / "p.jsonl").open("a") as fh:
            fh.write(json.dumps({"id": "leak", "problem": leaked["problem"], "answer": "1"}) + "\n")
        res = harvest(r)
        assert (res.problems, res.done, sim.stats()["requests"]) == (5, 5, 5)
    summary = json.loads((tmp_path / "run" / "harvest.json").read_text())
    assert summary["decontam"]["removed_count"] == 1 and summary["decontam"]["removed"][0]["problem_id"] == "leak"
    assert summary["source"]["drop:decontam"] == 1
    assert "leak" not in {p["id"] for p in lines(tmp_path / "run" / "problems.jsonl")}


def test_callers_signal_handlers_are_restored(tmp_path: Path) -> None:
    import signal

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not expected to be called")

    before = signal.signal(signal.SIGTERM, mine)
    try:
        with SimTeacher() as sim:
            harvest(make_recipe(tmp_path, sim.base_url, problems=2))
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.fixture()
def live_workers(monkeypatch) -> list[int]:
    """The engine's live worker count after each worker it starts."""
    from tracesynth.stages.harvest.online import Engine

    live: list[int] = []
    spawn = Engine._spawn_worker

    def counting(self: Engine) -> None:
        spawn(self)
        live.append(self._live_workers)

    monkeypatch.setattr(Engine, "_spawn_worker", counting)
    return live


def test_calls_backing_off_get_stand_in_workers_that_retire_afterwards(tmp_path: Path, live_workers) -> None:
    """A call sleeping out Retry-After holds a worker but no permit: a stand-in keeps its slot busy."""
    with SimTeacher(rate_429=0.4, retry_after_s=0.05, latency=0.02, seed=4) as sim:
        res = harvest(make_recipe(tmp_path, sim.base_url, problems=40, concurrency=3, max_attempts=12, adaptive=False))
        assert sim.stats()["max_in_flight"] <= 3  # stand-ins never exceed the concurrency cap
    assert (res.status, res.done, res.failed) == ("complete", 40, 0)
    assert live_workers[:3] == [1, 2, 3] and len(live_workers) > 3 and max(live_workers) > 3  # stand-ins were started
    attempts = [s.get("metadata", {}).get("attempts", 1) for s in lines(tmp_path / "run" / "samples.jsonl")]
    assert max(live_workers) <= 3 + sum(a - 1 for a in attempts)


def test_stand_in_workers_are_capped_when_every_call_backs_off(tmp_path: Path, live_workers) -> None:
    """An outage or a 429 storm must not pull the whole source into sleeping calls: at most 2 x concurrency."""
    from tracesynth.errors import TeacherError

    with SimTeacher(rate_500=1.0) as sim, pytest.raises(TeacherError, match="looks down"):
        harvest(
            make_recipe(
                tmp_path,
                sim.base_url,
                problems=60,
                concurrency=3,
                max_attempts=6,
                backoff_base_s=0.02,
                backoff_max_s=0.05,
                bench_after=1000,
            )
        )
    assert max(live_workers) == 6  # stand-ins were started, and capped at 2 x concurrency
    assert len(lines(tmp_path / "run" / "failures.jsonl")) >= 10  # each gave up with its reason


def test_first_requests_leave_before_the_whole_first_wave_is_produced(tmp_path: Path, monkeypatch) -> None:
    """At start-up the queue never fills, so a producer that never yields would read, hash and render a
    whole wave (2 x concurrency jobs) before the first request is sent; it yields every few jobs instead."""
    from tracesynth.stages.harvest.online import _RAMP_CHUNK, Engine

    produced_at_call: list[int] = []
    run_job = Engine.run_job

    async def recording(self: Engine, job: Any) -> None:
        produced_at_call.append(self.run.planner.stats["problems"])
        await run_job(self, job)

    monkeypatch.setattr(Engine, "run_job", recording)
    with SimTeacher() as sim:
        res = harvest(make_recipe(tmp_path, sim.base_url, problems=300, concurrency=64))
    assert (res.status, res.done) == ("complete", 300)
    assert produced_at_call[0] <= 2 * _RAMP_CHUNK < 64
