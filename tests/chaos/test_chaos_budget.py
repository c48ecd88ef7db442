"""Budget holds whatever the server sends: missing, negative, absurd or mistyped usage, hangs, resumes.

Prices are $1 / $10 per million input / output tokens and max_tokens is 1000, so the worst case of one
attempt is a little over $0.01 (1000 x $10/M plus the prompt estimate). "Committed" money is
``spent_usd + possibly_billed_usd`` of harvest.json's ledger; it must never pass ``teacher.budget_usd``.
"""

from __future__ import annotations

import json

import pytest
from hostile import Hostile

pytestmark = pytest.mark.chaos

WORST_ATTEMPT_USD = 1000 * 10.0 / 1e6  # lower bound of one attempt's worst case (max_tokens x output price)
WORST_ATTEMPT_MAX_USD = 0.0102  # upper bound: + the prompt estimate at $1/M
LONG = 2400  # reasoning characters of a reply (~600-700 tokens, under max_tokens)


def _committed(led: dict) -> float:
    return led["spent_usd"] + led["possibly_billed_usd"]


def _text_estimate_usd(row: dict) -> float:
    """What the reply's text costs at ~4 characters a token and $10/M (prompt ignored: a lower bound)."""
    chars = len(row.get("reasoning") or "") + len(row.get("content") or "")
    return chars / 4 * 10.0 / 1e6


def _harvest(kit, tmp_path, hostile: Hostile, n: int, **teacher):
    kit.write_problems(tmp_path / "problems.jsonl", n)
    recipe = kit.write_recipe(tmp_path, hostile.base_url, teacher=teacher)
    proc = kit.run_cli("harvest", recipe, "--quiet", timeout=90)
    kit.assert_no_traceback(proc)
    run = tmp_path / "run"
    return run, kit.read_jsonl(run / "samples.jsonl"), proc


def test_reply_without_usage_is_charged_an_estimate_and_the_cap_holds(kit, tmp_path):
    budget = 0.05
    with Hostile(mode="no_usage", reasoning_chars=LONG) as h:
        run, samples, _ = _harvest(kit, tmp_path, h, 20, budget_usd=budget)
    led = kit.ledger(run)
    status = kit.read_json(run / "harvest.json")["status"]
    assert led["spent_usd"] > 0, f"replies without usage were charged ${led['spent_usd']} (free text is not free)"
    for row in samples:
        assert "usage_estimated" in json.dumps(row["metadata"]), f"sample {row['id']} not flagged: {row['metadata']}"
        assert row["cost_usd"] > 0, f"sample {row['id']} cost ${row['cost_usd']}"
    assert _committed(led) <= budget + 1e-9, f"committed ${_committed(led):.4f} over the ${budget} cap"
    assert status == "budget" and len(samples) < 20, f"status {status} with {len(samples)}/20 samples: cap never hit"


def test_negative_usage_never_lowers_spend_below_the_estimate(kit, tmp_path):
    budget = 0.05
    with Hostile(mode="negative_usage", reasoning_chars=LONG) as h:
        run, samples, proc = _harvest(kit, tmp_path, h, 20, budget_usd=budget)
    led = kit.ledger(run)
    assert samples, f"no samples harvested: {kit.tail(proc.stderr)}"
    assert led["spent_usd"] >= 0, f"spent_usd is negative: {led['spent_usd']}"
    assert min(led["tokens"].values()) >= 0, f"negative token counts in the ledger: {led['tokens']}"
    for row in samples:
        est = _text_estimate_usd(row)
        assert row["cost_usd"] >= 0.5 * est, f"sample {row['id']} cost ${row['cost_usd']} below its text (${est:.5f})"
    assert _committed(led) <= budget + 1e-9, f"committed ${_committed(led):.4f} over the ${budget} cap"


def test_absurd_usage_is_charged_an_estimate_not_ten_thousand_dollars(kit, tmp_path):
    budget = 1.0
    with Hostile(mode="absurd_usage") as h:
        run, samples, proc = _harvest(kit, tmp_path, h, 5, budget_usd=budget)
    led = kit.ledger(run)
    assert samples, f"no samples harvested: {kit.tail(proc.stderr)}"
    for row in samples:
        assert row["cost_usd"] <= WORST_ATTEMPT_MAX_USD, (
            f"sample {row['id']} charged ${row['cost_usd']:,.2f} for a request capped at 1000 tokens"
        )
        assert "usage_estimated" in json.dumps(row["metadata"]), f"sample {row['id']} not flagged: {row['metadata']}"
    assert _committed(led) <= budget + 1e-9, f"ledger committed ${_committed(led):,.2f} against a ${budget} budget"


def test_usage_of_the_wrong_type_keeps_the_answer_and_is_not_paid_twice(kit, tmp_path):
    # usage {"completion_tokens": "abc"}: the answer arrived (and was billed); retrying it pays again
    with Hostile(mode="string_usage") as h:
        run, samples, _ = _harvest(kit, tmp_path, h, 5)
        requests = h.count()
    assert len(samples) == 5, f"{len(samples)}/5 answers kept; failures: {kit.read_jsonl(run / 'failures.jsonl')[:1]}"
    assert requests == 5, f"the server answered {requests} requests for 5 problems (answers thrown away and re-bought)"
    for row in samples:
        assert "usage_estimated" in json.dumps(row["metadata"]), f"sample {row['id']} not flagged: {row['metadata']}"


def test_retries_of_a_hanging_server_are_reserved_within_the_cap(kit, tmp_path):
    budget = 0.05
    with Hostile(mode="hang", hang_s=5) as h:
        run, _, _ = _harvest(kit, tmp_path, h, 20, budget_usd=budget, timeout_s=0.3, max_attempts=6)
        hung = h.count("hung")
    led = kit.ledger(run)
    assert _committed(led) <= budget + 1e-9, (
        f"spent ${led['spent_usd']:.4f} + possibly billed ${led['possibly_billed_usd']:.4f} "
        f"over the ${budget} cap ({hung} timed-out attempts)"
    )
    assert hung * WORST_ATTEMPT_USD <= budget + 1e-9, f"{hung} attempts that may be billed were sent under ${budget}"


def test_resumed_harvest_starts_from_the_money_already_possibly_billed(kit, tmp_path):
    # the first attempt of every request times out (possibly billed), the retry succeeds
    with Hostile(mode="hang_first", hang_s=5) as h:
        kit.write_problems(tmp_path / "problems.jsonl", 5)
        recipe = kit.write_recipe(tmp_path, h.base_url, teacher={"timeout_s": 0.3, "budget_usd": 10.0})
        first = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
        assert first.returncode == 0, kit.tail(first.stderr)
        run1 = kit.read_json(tmp_path / "run" / "harvest.json")
        hung_before = h.count("hung")
        kit.write_problems(tmp_path / "problems.jsonl", 10)  # five more problems
        second = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
        assert second.returncode == 0, kit.tail(second.stderr)
        hung_second = h.count("hung") - hung_before
    run2 = kit.read_json(tmp_path / "run" / "harvest.json")
    l1, l2 = run1["ledger"], run2["ledger"]
    assert l1["possibly_billed_usd"] >= 5 * WORST_ATTEMPT_USD - 1e-9, f"run 1 ledger: {l1}"
    started_spent = run2["spent_usd"] - run2["run_spent_usd"]
    assert started_spent == pytest.approx(l1["spent_usd"], abs=1e-6), f"run 2 started from ${started_spent}"
    want = l1["possibly_billed_usd"] + hung_second * WORST_ATTEMPT_USD
    assert l2["possibly_billed_usd"] >= want - 1e-6, (
        f"run 2 possibly billed ${l2['possibly_billed_usd']:.4f}: forgot run 1's ${l1['possibly_billed_usd']:.4f} "
        f"(want >= ${want:.4f})"
    )


def test_the_cap_holds_across_resumed_runs_that_time_out(kit, tmp_path):
    budget = 0.15
    with Hostile(mode="hang_first", hang_s=5) as h:
        recipe = kit.write_recipe(tmp_path, h.base_url, teacher={"timeout_s": 0.3, "budget_usd": budget})
        for k in range(1, 5):  # 5, 10, 15, 20 problems: each resume adds five
            kit.write_problems(tmp_path / "problems.jsonl", 5 * k)
            proc = kit.run_cli("harvest", recipe, "--quiet", timeout=60)
            kit.assert_no_traceback(proc)
            led = kit.ledger(tmp_path / "run")
            hung = h.count("hung")
            # every timed-out attempt may have been billed its worst case (> $0.01), whichever run sent it
            committed = led["spent_usd"] + hung * WORST_ATTEMPT_USD
            assert committed <= budget + 1e-9, (
                f"after run {k}: ${led['spent_usd']:.4f} spent + {hung} possibly billed attempts "
                f"(>= ${hung * WORST_ATTEMPT_USD:.2f}) passes the ${budget} cap; ledger says "
                f"possibly billed ${led['possibly_billed_usd']:.4f}"
            )
            assert _committed(led) <= budget + 1e-9, f"after run {k}: ledger over the cap: {led}"
