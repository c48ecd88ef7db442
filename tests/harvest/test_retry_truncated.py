"""--retry-truncated: only cut samples are asked again, complete ones are never paid twice, history stays."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harvest_kit import rows

from tracesynth.config import Recipe
from tracesynth.records import Sample
from tracesynth.rundir.live import live_samples, superseded_ids
from tracesynth.sim import SimTeacher
from tracesynth.stages.harvest import harvest, retry_truncated
from tracesynth.stages.harvest.plan import retry_id

SMALL = 200  # the additions need ~90 tokens, the long products ~450: those are cut


def write_problems(path: Path) -> Path:
    rows = [f"What is {10 + i} + {7 * i + 3}?" for i in range(4)]
    rows += [f"What is {123456 + i} * 789 + 4567 - 89?" for i in range(3)]
    with path.open("w") as fh:
        for i, q in enumerate(rows):
            fh.write(json.dumps({"id": f"p{i}", "problem": q, "answer": "0"}) + "\n")
    return path


def make_recipe(tmp: Path, base_url: str, max_tokens: int, **teacher: Any) -> Recipe:
    t = {
        "model": "sim-reasoner",
        "base_urls": [base_url],
        "api_key_env": None,
        "concurrency": 4,
        "sampling": {"max_tokens": max_tokens},
        "prices": {"input": 1.0, "output": 2.0},
        "backoff_base_s": 0.01,
        "batch": {"poll_s": 0.05, "poll_max_s": 0.1},
        **teacher,
    }
    return Recipe.model_validate(
        {
            "name": "t",
            "run_dir": str(tmp / "run"),
            "teacher": t,
            "source": {"kind": "jsonl", "path": str(write_problems(tmp / "p.jsonl"))},
        }
    )


def test_only_truncated_samples_are_asked_again_and_superseded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with SimTeacher() as sim:
        first = harvest(make_recipe(tmp_path, sim.base_url, SMALL), quiet=True)
        assert first.new == 7
        cut = [s for s in rows(run) if s["finish_reason"] == "length"]
        assert len(cut) == 3
        asked = sim.stats()["requests"]

        big = make_recipe(tmp_path, sim.base_url, 2000)
        again = harvest(big, quiet=True)  # only max_tokens changed: nothing is paid again
        assert (again.new, again.requests, again.done) == (0, 0, 7) and sim.stats()["requests"] == asked

        res = retry_truncated(big, quiet=True)
        assert (res.status, res.new, res.submitted, res.truncated) == ("complete", 3, 3, 0)
        assert sim.stats()["requests"] == asked + 3  # exactly the truncated ones

        assert retry_truncated(big, quiet=True).submitted == 0  # done: nothing left to re-ask
        assert sim.stats()["requests"] == asked + 3

    all_rows = rows(run)
    assert len(all_rows) == 10  # the 3 truncated rows stay as history
    new = [s for s in all_rows if s["supersedes"]]
    assert {s["supersedes"] for s in new} == {s["id"] for s in cut}
    assert {s["id"] for s in new} == {retry_id(s["id"], 1) for s in cut}
    assert all(s["metadata"]["max_tokens"] == 2000 and s["metadata"]["root"] == s["supersedes"] for s in new)
    live = list(live_samples(run))
    assert len(live) == 7 and not any(s.truncated for s in live)
    assert Counter((s.problem_id, s.index) for s in live).most_common(1)[0][1] == 1
    assert superseded_ids(run) == {s["id"] for s in cut}

    summary = json.loads((run / "harvest.json").read_text())
    assert summary["mode"] == "retry" and summary["run_spent_usd"] == 0.0  # the second retry run spent nothing
    # the run's ledger: the truncated spend stays, the re-asks are counted apart
    led = summary["ledger"]
    assert summary["spent_usd"] == pytest.approx(sum(s["cost_usd"] for s in all_rows), abs=1e-5)
    assert led["truncated_usd"] > 0 and led["retried_usd"] > 0
    assert led["truncated_usd"] == pytest.approx(sum(s["cost_usd"] for s in cut), abs=1e-5)
    assert led["retried_usd"] == pytest.approx(sum(s["cost_usd"] for s in new), abs=1e-5)


def test_retry_reports_spend_apart_and_skips_samples_that_would_be_cut_again(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with SimTeacher() as sim:
        harvest(make_recipe(tmp_path, sim.base_url, SMALL), quiet=True)
        cut_usd = sum(s["cost_usd"] for s in rows(run) if s["finish_reason"] == "length")
        same = retry_truncated(make_recipe(tmp_path, sim.base_url, SMALL), quiet=True)
        assert same.submitted == 0 and "not larger" in same.message  # same budget: would be cut again
        mid = retry_truncated(make_recipe(tmp_path, sim.base_url, 300), quiet=True)  # still too small
        assert (mid.new, mid.truncated) == (3, 3)
        assert mid.run_spent_usd > 0 and mid.ledger["retried_usd"] == pytest.approx(mid.run_spent_usd, abs=1e-5)
        assert mid.ledger["truncated_usd"] == pytest.approx(cut_usd + mid.run_spent_usd, abs=1e-5)
        assert mid.ledger["tokens"]["reasoning"] > 0 and mid.ledger["tokens"]["answer"] >= 0
        final = retry_truncated(make_recipe(tmp_path, sim.base_url, 2000), quiet=True)  # a retry of a retry
        assert (final.new, final.truncated) == (3, 0)
    chains = {s["id"]: s for s in rows(run)}
    depth2 = [s for s in chains.values() if s["metadata"].get("retry") == 2]
    assert len(depth2) == 3 and all(chains[s["supersedes"]]["metadata"]["retry"] == 1 for s in depth2)
    live = list(live_samples(run))
    assert len(live) == 7 and all(s.finish_reason == "stop" for s in live)


def test_retry_truncated_through_the_batch_api(tmp_path: Path) -> None:
    with SimTeacher(batch_delay_s=0.05) as sim:
        harvest(make_recipe(tmp_path, sim.base_url, SMALL), quiet=True)
        res = retry_truncated(make_recipe(tmp_path, sim.base_url, 2000), batch=True, quiet=True)
        assert (res.mode, res.submitted, res.new, res.truncated) == ("batch", 3, 3, 0)
        assert res.run_spent_usd > 0 and res.ledger["retried_usd"] == pytest.approx(res.run_spent_usd, abs=1e-5)
        assert sim.stats()["batches"]["created"] == 1
    live = list(live_samples(tmp_path / "run"))
    assert len(live) == 7 and not any(s.truncated for s in live)


def test_samples_of_other_settings_are_not_retried(tmp_path: Path) -> None:
    with SimTeacher() as sim:
        harvest(make_recipe(tmp_path, sim.base_url, SMALL), quiet=True)
        other = make_recipe(tmp_path, sim.base_url, 2000)
        other.teacher.sampling.temperature = 0.9  # another sampling identity: not this recipe's samples
        res = retry_truncated(other, quiet=True)
        assert res.submitted == 0


def test_live_samples_reads_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    a = Sample(id="s-a", problem_id="p", index=0, model="m", finish_reason="length")
    b = Sample(id="s-b", problem_id="p", index=0, model="m", finish_reason="stop", supersedes="s-a")
    c = Sample(id="s-c", problem_id="q", index=0, model="m", finish_reason="stop")
    text = "".join(x.model_dump_json() + "\n" for x in (a, b, c)) + '{"id": "s-torn'
    path.write_text(text)
    assert [s.id for s in live_samples(path)] == ["s-b", "s-c"]
    assert path.read_text() == text  # a torn tail (a live writer) is left alone


def test_samples_re_asked_twice_are_curated_like_any_other(tmp_path: Path) -> None:
    """A second --retry-truncated supersedes a re-ask, not an original: curation must still take it."""
    from tracesynth.stages.curate import curate
    from tracesynth.stages.verify import verify

    run = tmp_path / "run"
    with SimTeacher() as sim:
        harvest(make_recipe(tmp_path, sim.base_url, 60), quiet=True)  # every answer is cut
        retry_truncated(make_recipe(tmp_path, sim.base_url, 200), quiet=True)  # the additions now fit
        last = make_recipe(tmp_path, sim.base_url, 2000)
        assert retry_truncated(last, quiet=True).new == 3  # the products, asked a third time
    depths = Counter(s.metadata.get("retry", 0) for s in live_samples(run))
    assert depths == {1: 4, 2: 3} and not any(s.truncated for s in live_samples(run))
    keep_all = last.model_copy(update={"curate": last.curate.model_copy(update={"keep": "all"})})
    assert verify(keep_all, workers=1).samples == 7
    res = curate(keep_all)
    assert res.traces == 7
    read = res.steps[0]
    assert read["dropped"] == {"superseded": 10}  # 7 first asks and 3 first re-asks; nothing called stale
