"""Sampling until verified: ask again only where no sample passed, verify as replies arrive, resume exactly.

The simulated teacher gives every problem its own wrong rate (``wrong_rate_range``), and its answers
are deterministic in (problem, sample index) once the recipe sets a sampling seed: so the samples an
until-verified harvest must ask are known in advance — for each problem, indices 0.. up to the first
one that passes, at most K — and a resumed or killed run must end with exactly that set.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from harvest_kit import recipe_dict, rows
from pydantic import ValidationError

import tracesynth as ts
from tracesynth.config import Recipe

K = 6
NEVER_SURE, STUCK = "verify_plugins:never_sure", "verify_plugins:stuck_in_c"


def until_recipe(tmp: Path, base_url: str | None, problems: int = 60, **teacher: Any) -> Recipe:
    teacher = {"until_verified": K, "sampling": {"max_tokens": 600, "seed": 0}, **teacher}
    tmp.mkdir(parents=True, exist_ok=True)
    return Recipe.model_validate(recipe_dict(tmp, base_url, problems, **teacher))


def fixed_recipe(tmp: Path, base_url: str, problems: int) -> Recipe:
    """Fixed n = K, same problems, same sampling: the samples every until-verified run chooses from."""
    tmp.mkdir(parents=True, exist_ok=True)
    return Recipe.model_validate(recipe_dict(tmp, base_url, problems, n=K, sampling={"max_tokens": 600, "seed": 0}))


def by_problem(run: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in rows(run / "samples.jsonl"):
        out[s["problem_id"]].append(s)
    return out


def passing(run: Path) -> set[str]:
    return {v["sample_id"] for v in rows(run / "verdicts.jsonl") if v["status"] == "pass"}


def expected_ids(fixed_run: Path, keep: int = 1) -> set[str]:
    """From a fixed n = K harvest of the same problems, verified: each problem's indices up to its keep-th pass."""
    ok = passing(fixed_run)
    want: set[str] = set()
    for samples in by_problem(fixed_run).values():
        got = 0
        for s in sorted(samples, key=lambda s: s["index"]):
            want.add(s["id"])
            got += s["id"] in ok
            if got >= keep:
                break
    return want


@pytest.fixture
def spread_teacher(sim_teacher):
    return sim_teacher(wrong_rate_range="0.05:0.95", seed=3)


def test_asks_again_only_where_no_sample_passed_and_writes_the_verdicts(tmp_path: Path, spread_teacher) -> None:
    fixed = fixed_recipe(tmp_path / "f", spread_teacher.base_url, 60)
    ts.harvest(fixed, quiet=True)
    ts.verify(fixed)

    recipe = until_recipe(tmp_path / "u", spread_teacher.base_url)
    res = ts.harvest(recipe, quiet=True)
    run = Path(recipe.run_dir)
    assert res.status == "complete" and res.failed == 0

    ids = {s["id"] for s in rows(run / "samples.jsonl")}
    assert ids == expected_ids(Path(fixed.run_dir))  # the same sample ids as fixed n: a subset of them
    fixed_rows = {s["id"]: s for s in rows(Path(fixed.run_dir) / "samples.jsonl")}
    assert all(fixed_rows[s["id"]]["content"] == s["content"] for s in rows(run / "samples.jsonl"))
    ok = passing(run)
    for samples in by_problem(run).values():
        assert len(samples) <= K
        passes = [s for s in samples if s["id"] in ok]
        assert len(passes) <= 1
        if passes:  # the pass is the last sample asked: nothing after it
            assert passes[0]["index"] == max(s["index"] for s in samples)
    assert len(ids) < 0.7 * len(fixed_rows)  # paid for far fewer samples than n = K

    verdicts = rows(run / "verdicts.jsonl")
    assert Counter((v["sample_id"], v["verifier"]) for v in verdicts) == Counter((i, "math") for i in ids)
    assert ts.verify(recipe).written == 0  # verify afterwards finds nothing to do

    summary = json.loads((run / "harvest.json").read_text())["until_verified"]
    assert summary["samples"] == len(ids) and summary["problems"] == 60
    assert summary["solved"] + summary["unsolved"] == 60 and summary["kept_traces"] == len(ok) == summary["solved"]
    assert sum(summary["samples_per_problem"].values()) == 60
    assert summary["usd_per_kept_trace"] == pytest.approx(summary["spent_usd"] / len(ok), rel=1e-3)
    assert summary["fixed_n_k"]["samples"] == 60 * K
    assert summary["fixed_n_same_traces"]["n"] == 1 + max(
        s["index"] for s in rows(run / "samples.jsonl") if s["id"] in ok
    )
    # the receipt, the dataset card and the report say what each kept trace cost
    from tracesynth.accounting.receipt import build_receipt

    notes = " ".join(build_receipt(run).notes)
    assert f"{len(ok):,} verified traces from {len(ids):,} samples" in notes and "per kept trace" in notes
    assert f"A fixed n = {K}" in notes
    ts.curate(recipe)
    ts.export(recipe)
    card = (run / "dataset" / "README.md").read_text()
    assert "Sampled until verified" in card and "per kept trace" in card


def test_keep_per_problem_stops_at_that_many_passes(tmp_path: Path, spread_teacher) -> None:
    fixed = fixed_recipe(tmp_path / "f", spread_teacher.base_url, 40)
    ts.harvest(fixed, quiet=True)
    ts.verify(fixed)
    recipe = until_recipe(tmp_path / "u", spread_teacher.base_url, 40, keep_per_problem=2)
    ts.harvest(recipe, quiet=True)
    run = Path(recipe.run_dir)
    assert {s["id"] for s in rows(run / "samples.jsonl")} == expected_ids(Path(fixed.run_dir), keep=2)
    ok = passing(run)
    assert max(sum(s["id"] in ok for s in ss) for ss in by_problem(run).values()) == 2


def test_a_budget_stop_then_resume_ends_with_the_samples_of_an_uninterrupted_run(
    tmp_path: Path, spread_teacher
) -> None:
    whole = until_recipe(tmp_path / "a", spread_teacher.base_url)
    ts.harvest(whole, quiet=True)
    want = {s["id"] for s in rows(Path(whole.run_dir) / "samples.jsonl")}

    capped = until_recipe(tmp_path / "b", spread_teacher.base_url, budget_usd=0.01)
    res = ts.harvest(capped, quiet=True)
    run = Path(capped.run_dir)
    assert res.status == "budget"
    first = {s["id"] for s in rows(run / "samples.jsonl")}
    assert 0 < len(first) < len(want)
    assert json.loads((run / "harvest.json").read_text())["until_verified"]["open"] > 0
    # the run was stopped between replies and verdicts too: drop the last verdicts, as a kill would
    lines = (run / "verdicts.jsonl").read_text().splitlines(keepends=True)
    (run / "verdicts.jsonl").write_text("".join(lines[: len(lines) // 2]))

    res = ts.harvest(until_recipe(tmp_path / "b", spread_teacher.base_url), quiet=True)
    assert res.status == "complete"
    assert {s["id"] for s in rows(run / "samples.jsonl")} == want
    verdicts = rows(run / "verdicts.jsonl")
    assert len(verdicts) == len({v["sample_id"] for v in verdicts}) == len(want)


def test_unverifiable_samples_are_asked_again_and_reported_apart(tmp_path: Path, spread_teacher) -> None:
    recipe = until_recipe(tmp_path, spread_teacher.base_url, 10)
    recipe = recipe.model_copy(update={"verify": recipe.verify.model_copy(update={"verifiers": [NEVER_SURE]})})
    ts.harvest(recipe, quiet=True)
    summary = json.loads((Path(recipe.run_dir) / "harvest.json").read_text())["until_verified"]
    assert summary["samples"] == 10 * K and summary["unverifiable_samples"] == 10 * K
    assert summary["unsolved"] == 10 and summary["kept_traces"] == 0 and summary["usd_per_kept_trace"] is None


@pytest.mark.slow
async def test_the_verifier_pool_survives_a_worker_killed_by_its_cpu_limit() -> None:
    from tracesynth.records import Problem, Sample
    from tracesynth.stages.verify.pool import VerifierPool

    problem = Problem(id="p", prompt="1+1?", answer="2")
    contents = ["fine 0", "STUCK", "fine 2", "fine 3", "fine 4"]
    items = [
        (problem, Sample(id=f"s{i}", problem_id="p", index=i, model="m", content=c), [STUCK], [STUCK])
        for i, c in enumerate(contents)
    ]
    with VerifierPool({STUCK: {"timeout_s": 0.2}}, workers=2, chunk_size=2) as pool:
        got = await asyncio.gather(*(pool.verify(item) for item in items))
        again = await pool.verify(items[0])  # the rebuilt pool goes on working
    assert [v[0].status for v in got] == ["pass", "unverifiable", "pass", "pass", "pass"]
    assert got[1][0].tag == "timeout" and "hard CPU limit" in got[1][0].reason
    assert pool.restarts >= 1 and again[0].status == "pass"


@pytest.mark.parametrize(
    "teacher, message",
    [
        ({"api_n": True}, "api_n"),
        ({"keep_per_problem": K + 1}, "could never stop"),
        ({"n": 4}, "replaces n"),
    ],
)
def test_settings_that_cannot_work_are_refused(tmp_path: Path, teacher: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        until_recipe(tmp_path, None, **teacher)
    with pytest.raises(ValidationError, match="only with until_verified"):
        Recipe.model_validate(recipe_dict(tmp_path, None, keep_per_problem=2))


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_gives_the_samples_and_verdicts_of_one_run(
    tmp_path: Path, spread_teacher
) -> None:
    whole = until_recipe(tmp_path / "a", spread_teacher.base_url, 120)
    ts.harvest(whole, quiet=True)
    want = {s["id"] for s in rows(Path(whole.run_dir) / "samples.jsonl")}

    data = recipe_dict(tmp_path, None, 120, until_verified=K, sampling={"max_tokens": 600, "seed": 0})
    data["teacher"]["sim"] = {"enabled": True, "options": {"wrong_rate_range": "0.05:0.95", "seed": 3, "latency": 0.02}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    run = Path(data["run_dir"])
    cmd = [sys.executable, "-m", "tracesynth", "harvest", str(path), "--quiet"]

    def written() -> int:
        p = run / "samples.jsonl"
        return p.read_bytes().count(b"\n") if p.exists() else 0

    rng = random.Random(5)
    kills = []
    for _ in range(3):
        target = written() + rng.randint(5, 40)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and written() < target and proc.poll() is None:
            time.sleep(0.01)
        proc.kill()
        proc.wait(timeout=10)
        kills.append(written())
    assert any(0 < c < len(want) for c in kills), kills
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    samples = rows(run / "samples.jsonl")
    assert len(samples) == len({s["id"] for s in samples}) and {s["id"] for s in samples} == want
    verdicts = rows(run / "verdicts.jsonl")
    assert Counter((v["sample_id"], v["verifier"]) for v in verdicts) == Counter((i, "math") for i in want)


def test_in_batch_mode_the_rounds_are_successive_batches(tmp_path: Path, sim_teacher) -> None:
    sim = sim_teacher(wrong_rate_range="0.05:0.95", seed=3, batch_delay_s=0.05)
    fixed = fixed_recipe(tmp_path / "f", sim.base_url, 40)
    ts.harvest(fixed, quiet=True)
    ts.verify(fixed)
    recipe = until_recipe(
        tmp_path / "u",
        sim.base_url,
        40,
        mode="batch",
        prices={"input": 1.0, "output": 2.0, "batch_discount": 0.5},
        batch={"poll_s": 0.05, "poll_max_s": 0.2},
    )
    res = ts.harvest(recipe, quiet=True)
    run = Path(recipe.run_dir)
    assert res.status == "complete"
    assert {s["id"] for s in rows(run / "samples.jsonl")} == expected_ids(Path(fixed.run_dir))
    batches = json.loads((run / "harvest.json").read_text())["batches"]
    deepest = max(len(ss) for ss in by_problem(run).values())
    assert len(batches) == deepest > 1  # one batch per round: as many rounds as the problem that needed most
    assert ts.verify(recipe).written == 0
    summary = json.loads((run / "harvest.json").read_text())["until_verified"]
    assert summary["samples"] == len(rows(run / "samples.jsonl")) and summary["open"] == 0


def test_shards_then_merge_give_the_samples_and_verdicts_of_one_run(tmp_path: Path, spread_teacher) -> None:
    from tracesynth.stages.harvest.shards import merge

    whole = until_recipe(tmp_path / "a", spread_teacher.base_url, 40)
    ts.harvest(whole, quiet=True)
    want = {s["id"] for s in rows(Path(whole.run_dir) / "samples.jsonl")}
    recipe = until_recipe(tmp_path / "b", spread_teacher.base_url, 40)
    for shard in ("0/2", "1/2"):
        assert ts.harvest(recipe, quiet=True, shard=shard).status == "complete"
    merged = merge(recipe.run_dir)
    run = Path(recipe.run_dir)
    assert {s["id"] for s in rows(run / "samples.jsonl")} == want
    assert merged.added["verdicts"] == len(want) == len(rows(run / "verdicts.jsonl"))
    assert ts.verify(recipe).written == 0
