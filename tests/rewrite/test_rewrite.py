"""The rewrite stage against the simulated teacher: harvest → verify → rewrite → curate → export.

One simulator harvests, a second one (its requests counted) is the rewriting model; the second
answers a rewrite prompt with the trace in Sky-T1's blocks and, for one trace in five
(tracesynth.sim.tasks.planted_change), a changed boxed answer — which the stage must refuse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harvest_kit import recipe_dict, rows

from tracesynth.config import Recipe
from tracesynth.sim.tasks import planted_change
from tracesynth.thinking import SOLUTION, THINK, THOUGHT

REWRITE_PRICES = {"input": 0.5, "output": 1.5}


def _recipe(tmp: Path, teacher: str, rewriter: str, problems: int = 12, **rewrite: Any) -> Recipe:
    d = recipe_dict(tmp, teacher, problems)
    d["verify"] = {"verifiers": ["math"], "workers": 1}
    d["curate"] = {"decontam": {"enabled": False}}
    d["rewrite"] = {
        "enabled": True,
        "model": "gpt-4o-mini-sim",
        "base_urls": [rewriter],
        "api_key_env": None,
        "prices": REWRITE_PRICES,
        "concurrency": 4,
        "sampling": {"temperature": 0.7, "max_tokens": 2000},
        **rewrite,
    }
    return Recipe.model_validate(d)


def _harvested(recipe: Recipe) -> list[dict[str, Any]]:
    from tracesynth.rundir.store import RunStore
    from tracesynth.stages.harvest import harvest
    from tracesynth.stages.rewrite.stage import kept_samples
    from tracesynth.stages.verify import verify

    harvest(recipe, quiet=True)
    verify(recipe, workers=1)
    with RunStore(recipe.run_dir) as store:
        return [s.model_dump() for s in kept_samples(store, recipe)]


def _planted(kept: list[dict[str, Any]]) -> set[str]:
    from tracesynth.records import Sample
    from tracesynth.stages.rewrite.stage import source_text

    return {s["id"] for s in kept if planted_change(source_text(Sample(**s)))}


def _dataset_rows(run: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files = sorted((run / "dataset" / "data").glob("*.parquet"))
    assert files
    return [r for f in files for r in pq.read_table(f).to_pylist()]


@pytest.fixture
def sims(sim_teacher):
    return sim_teacher(seed=4, reasoning="reasoning_content"), sim_teacher(seed=5)


def test_rewrite_then_export_trains_on_sky_t1_blocks_and_refuses_changed_answers(tmp_path, sims):
    from tracesynth.accounting.receipt import build_receipt
    from tracesynth.stages.curate import curate
    from tracesynth.stages.export import export
    from tracesynth.stages.rewrite import rewrite

    teacher, rewriter = sims
    recipe = _recipe(tmp_path, teacher.base_url, rewriter.base_url, problems=15)
    kept = _harvested(recipe)
    planted = _planted(kept)
    assert kept and planted and len(planted) < len(kept)  # the simulator plants some, not all

    res = rewrite(recipe)
    run = Path(recipe.run_dir)
    done = {r["id"]: r for r in rows(run / "rewrites.jsonl")}
    failed = rows(run / "rewrite_failures.jsonl")
    assert res.status == "complete" and rewriter.stats()["requests"] == len(kept)
    assert set(done) == {s["id"] for s in kept} - planted  # every changed answer refused, every other kept
    assert {f["id"] for f in failed} == planted and {f["kind"] for f in failed} == {"answer_changed"}
    assert all(r["reasoning"] and "\\boxed" in r["content"] for r in done.values())
    assert all(r["cost_usd"] > 0 for r in done.values())
    assert {json.loads(line)["id"] for line in (run / "samples.jsonl").read_text().splitlines()} >= set(done)

    curate(recipe)
    export(recipe)
    by_id = {r["sample_id"]: r["messages"][-1]["content"] for r in _dataset_rows(run)}
    assert set(by_id) == {s["id"] for s in kept}
    for sid, text in by_id.items():
        if sid in done:  # trained on the rewrite: Sky-T1's blocks, no <think>
            assert text.startswith(THOUGHT.start) and THOUGHT.end in text and text.endswith(SOLUTION.end)
            assert done[sid]["content"] in text and THINK.start not in text
        else:  # refused: the original trace, as export writes any other
            assert text.startswith(THINK.start) and THOUGHT.start not in text

    receipt = build_receipt(run)
    lines = [x for x in receipt.lines if x.item == "rewrite"]
    assert len(lines) == 1 and f"{len(done)} traces rewritten by gpt-4o-mini-sim" in lines[0].detail
    assert lines[0].usd == pytest.approx(sum(r["cost_usd"] for r in done.values()) + sum(f["cost_usd"] for f in failed))
    assert lines[0].usd > 0


def test_resume_asks_nothing_twice_and_failures_only_item_retries_times(tmp_path, sims):
    from tracesynth.stages.rewrite import rewrite

    teacher, rewriter = sims
    recipe = _recipe(tmp_path, teacher.base_url, rewriter.base_url, item_retries=1)
    kept = _harvested(recipe)
    planted = _planted(kept)
    rewrite(recipe)
    first = rewriter.stats()["requests"]
    assert first == len(kept)
    again = rewrite(recipe)  # the refused ones get their one retry; nothing rewritten is asked again
    assert rewriter.stats()["requests"] - first == len(planted) and again.done_before == len(kept) - len(planted)
    third = rewriter.stats()["requests"]
    last = rewrite(recipe)  # retries used up: nothing left to ask
    assert rewriter.stats()["requests"] == third and last.status == "nothing"
    ids = [r["id"] for r in rows(Path(recipe.run_dir) / "rewrites.jsonl")]
    assert len(ids) == len(set(ids))


def test_budget_cap_stops_the_pass_and_a_higher_cap_resumes(tmp_path, sims):
    from tracesynth.accounting.passes import scan_pass
    from tracesynth.stages.rewrite import rewrite

    teacher, rewriter = sims
    # worst case per request ~ (prompt x 1.5 + 2,000) tokens at $1,000 / M: a few dollars; $12 fits a few
    prices = {"input": 1000.0, "output": 1000.0}
    recipe = _recipe(tmp_path, teacher.base_url, rewriter.base_url, prices=prices, budget_usd=12.0, concurrency=1)
    kept = _harvested(recipe)
    res = rewrite(recipe)
    run = Path(recipe.run_dir)
    spend = scan_pass(run, "rewrite")
    asked = rewriter.stats()["requests"]
    assert res.status == "budget" and "rewrite.budget_usd" in res.message
    assert 0 < asked < len(kept) and spend.done + spend.failures == asked
    assert spend.spent_usd + spend.possibly_billed_usd <= 12.0
    more = _recipe(tmp_path, teacher.base_url, rewriter.base_url, prices=prices, budget_usd=10_000.0)
    res2 = rewrite(more)
    assert res2.status == "complete" and rewriter.stats()["requests"] == len(kept)  # only the rest was asked


def test_unusable_replies_are_item_errors_and_bad_config_is_one_line(tmp_path, sims):
    from tracesynth.errors import TracesynthError
    from tracesynth.stages.ask import Unusable
    from tracesynth.stages.rewrite import rewrite
    from tracesynth.stages.rewrite.stage import parse_rewrite, parse_rewrite_text
    from tracesynth.teacher.parse import normalise_message

    t, s = THOUGHT, SOLUTION
    for bad in ("no blocks at all", f"{t.start} x {t.end} {s.start} y", f"{t.start}{t.end}{s.start} y{s.end}"):
        with pytest.raises(Unusable):
            parse_rewrite_text(bad)
        with pytest.raises(Unusable):  # the same reply as the client hands it over
            parse_rewrite(normalise_message({"content": bad}))
    good = f"{t.start} a {t.end}\n{s.start} b {s.end}"
    assert parse_rewrite_text(good) == ("a", "b") == parse_rewrite(normalise_message({"content": good}))

    teacher, rewriter = sims
    off = _recipe(tmp_path, teacher.base_url, rewriter.base_url, enabled=False)
    with pytest.raises(TracesynthError, match=r"rewrite\.enabled"):
        rewrite(off)
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        _recipe(tmp_path, teacher.base_url, rewriter.base_url, api_key_env="sk-123")
    # the teacher (not the rewriting sim) answers with its own solutions, never in Sky-T1 blocks: all item errors
    wrong = _recipe(tmp_path, teacher.base_url, teacher.base_url, prompt=str(_plain_prompt(tmp_path)))
    kept = _harvested(wrong)
    res = rewrite(wrong)
    assert res.done == 0 and res.errors == len(kept) and set(res.errors_by_kind) == {"no_blocks"}


def _plain_prompt(tmp: Path) -> Path:
    p = tmp / "plain.txt"
    p.write_text("Please restate this solution:\n{{ content }}\n")
    return p
