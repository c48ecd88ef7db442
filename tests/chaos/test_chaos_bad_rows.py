"""One bad reply or one bad source row never kills a run: it becomes a counted, visible error row."""

from __future__ import annotations

import json

import pytest
from hostile import Hostile

pytestmark = pytest.mark.chaos

BAD_QUESTION = "What is 15 + 40?"  # problem p5 of arithmetic_rows


def _harvest(kit, tmp_path, hostile: Hostile, rows):
    kit.write_problems(tmp_path / "problems.jsonl", rows=rows)
    recipe = kit.write_recipe(tmp_path, hostile.base_url)
    proc = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
    run = tmp_path / "run"
    return proc, run, kit.read_jsonl(run / "samples.jsonl"), kit.read_jsonl(run / "failures.jsonl")


@pytest.mark.parametrize("mode", ["finish_reason_int", "content_int"])
def test_one_malformed_reply_is_an_item_error_and_the_harvest_finishes(kit, tmp_path, mode):
    # finish_reason 7 (the case) / message.content 5 (a number where the answer text goes)
    with Hostile(by_question={BAD_QUESTION: mode}) as h:
        rows = kit.arithmetic_rows(10)
        assert rows[5]["question"] == BAD_QUESTION
        proc, _run, samples, failures = _harvest(kit, tmp_path, h, rows)
    kit.assert_no_traceback(proc)
    assert proc.returncode == 0, kit.tail(proc.stderr)
    stored = [s for s in samples if s["problem_id"] == "p5"]
    assert not stored, f"the malformed reply was stored as a sample (content {stored[0]['content']!r})"
    assert sorted(s["problem_id"] for s in samples) == sorted(f"p{i}" for i in range(10) if i != 5), (
        f"samples: {sorted(s['problem_id'] for s in samples)}"
    )
    bad = [f for f in failures if f["problem_id"] == "p5"]
    assert bad and all(f["error_kind"] == "malformed" for f in bad), f"failures.jsonl: {failures}"


def test_a_question_with_a_lone_surrogate_is_dropped_or_repaired_and_the_rest_is_harvested(kit, tmp_path):
    rows = [
        *kit.arithmetic_rows(5),
        {"id": "bad", "question": "What is 1 + \ud800?", "answer": "1"},
        *kit.arithmetic_rows(4, start=5),
    ]
    with Hostile() as h:
        proc, run, samples, _ = _harvest(kit, tmp_path, h, rows)
    raw = (tmp_path / "problems.jsonl").read_text()
    assert "\\ud800" in raw, "the source file should hold the escape \\ud800"
    kit.assert_no_traceback(proc)
    got = {s["problem_id"] for s in samples}
    assert {f"p{i}" for i in range(9)} <= got, f"good rows not harvested: {sorted(got)}; {kit.tail(proc.stderr)}"
    summary = (run / "harvest.json").read_text().lower() if (run / "harvest.json").exists() else ""
    assert "bad" in got or "surrogate" in summary or "encod" in summary, (
        "the bad row is neither harvested (repaired) nor counted as dropped in harvest.json"
    )


def test_duplicate_ids_in_the_source_are_reported_on_the_console(kit, tmp_path):
    rows = [*kit.arithmetic_rows(5), {"id": "p2", "question": "What is 99 + 1?", "answer": "100"}]
    with Hostile() as h:
        proc, run, samples, _ = _harvest(kit, tmp_path, h, rows)
    assert proc.returncode == 0, kit.tail(proc.stderr)
    assert len(samples) == 5
    counted = json.loads((run / "harvest.json").read_text())["source"]
    assert "duplicate" in (proc.stdout + proc.stderr).lower(), (
        f"a dropped row is only in harvest.json ({counted}); the console ends: {kit.tail(proc.stderr, 1)}"
    )
