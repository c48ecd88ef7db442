"""Variants as the demo uses them: seeds, extra (greedy) evaluations and an equal-compute step count.

Only the planning is tested here (recipes and train.json files, no training); the scaled-down demo
in test_run_e2e.py runs it all.
"""

from __future__ import annotations

import json
import math

import pytest

from tracesynth.config import load_recipe
from tracesynth.errors import ConfigError, UserError
from tracesynth.pipeline import extra_evals, matched_steps, twin_of, variant_recipe, variant_workers


def recipe(tmp_path, variants: dict):
    r = load_recipe(None, [f"run_dir={tmp_path / 'run'}", "student.init=tiny"])
    return r.model_copy(update={"variants": variants})


ANSWERS = {"dataset.reasoning": "none", "sft.seed": 1}
VARIANTS = {
    "verified-s1": {"sft.seed": 1, "run.evals": {"greedy": {"eval.temperature": 0, "eval.n": 1}}},
    "answers-s1": dict(ANSWERS),
    "answers-compute-s1": {**ANSWERS, "run.flops_of": "verified-s1"},
}


def train_json(tmp_path, name: str, **fields) -> None:
    path = tmp_path / "run" / "variants" / name / "student" / "train.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(fields))


def test_run_keys_are_not_applied_to_the_variant_recipe(tmp_path):
    r = recipe(tmp_path, VARIANTS)
    sub = variant_recipe(r, "verified-s1")
    assert sub.sft["seed"] == 1 and sub.variants == {} and sub.run_dir.endswith("variants/verified-s1")
    assert extra_evals(r, "verified-s1") == {"greedy": {"eval.temperature": 0, "eval.n": 1}}
    assert extra_evals(r, "answers-s1") == {}
    bad = recipe(tmp_path, {"a": {"run.typo": 1}})
    with pytest.raises(ConfigError, match=r"variants\.a\.run\.typo: unknown key"):
        variant_recipe(bad, "a")
    with pytest.raises(ConfigError, match="'after' and 'before'"):
        extra_evals(recipe(tmp_path, {"a": {"run.evals": {"after": {}}}}), "a")


def test_equal_compute_steps_come_from_the_reference_and_the_twin(tmp_path):
    r = recipe(tmp_path, VARIANTS)
    assert twin_of(r, "answers-compute-s1") == "answers-s1"
    assert matched_steps(r, "verified-s1") is None
    with pytest.raises(UserError, match="needs 'verified-s1' trained first"):
        matched_steps(r, "answers-compute-s1")
    train_json(tmp_path, "verified-s1", steps=1000, tokens_seen=2_500_000, params=150_144)
    train_json(tmp_path, "answers-s1", steps=1000, tokens_seen=780_000, params=145_920)
    want = math.ceil(6 * 150_144 * 2_500_000 / (6 * 145_920 * 780_000 / 1000))
    assert matched_steps(r, "answers-compute-s1") == want > 3000


def test_equal_compute_without_a_twin_or_reference_is_an_error(tmp_path):
    lonely = recipe(tmp_path, {"v-s1": {}, "a-s1": {"dataset.reasoning": "none", "run.flops_of": "v-s1"}})
    with pytest.raises(ConfigError, match="needs a twin"):
        matched_steps(lonely, "a-s1")
    missing = recipe(tmp_path, {"a-s1": {"run.flops_of": "nope"}})
    with pytest.raises(ConfigError, match="no variant named 'nope'"):
        matched_steps(missing, "a-s1")


def test_variant_workers(tmp_path, monkeypatch):
    many = recipe(tmp_path, {f"v-s{k}": {"sft.seed": k} for k in range(4)})
    monkeypatch.setenv("TRACESYNTH_VARIANT_WORKERS", "3")
    assert variant_workers(many) == 3
    monkeypatch.setenv("TRACESYNTH_VARIANT_WORKERS", "x")
    with pytest.raises(ConfigError, match="TRACESYNTH_VARIANT_WORKERS"):
        variant_workers(many)
    monkeypatch.delenv("TRACESYNTH_VARIANT_WORKERS")
    assert variant_workers(recipe(tmp_path, VARIANTS)) == 1  # fewer than 4 variants: one after the other
    assert variant_workers(many.model_copy(update={"student": many.student.model_copy(update={"model": "m"})})) == 1
