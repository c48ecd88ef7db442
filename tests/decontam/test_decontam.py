"""Decontamination: word 8-grams against the shipped eval sets, allow-lists, extra sets, the 95 of GSM8K."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tracesynth.config import DecontamConfig, SourceConfig
from tracesynth.decontam.index import DecontamIndex, decontam_filter, decontam_summary, words
from tracesynth.errors import ConfigError, DataError
from tracesynth.records import Problem
from tracesynth.sources.problems import iter_problems

GSM_TEST_0 = (
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four."
)


def test_words_are_lowercase_and_punctuation_insensitive():
    assert words("Hello,   WORLD!\n(it's) x_1") == ["hello", "world", "it", "s", "x_1"]


def test_gsm8k_train_has_95_contaminated_problems():
    """The measured fact of issue 10: plain word 8-grams over \\w+ tokens, all shipped eval sets."""
    stats, removed = Counter(), []
    kept = list(
        decontam_filter(
            iter_problems(SourceConfig(kind="builtin", name="gsm8k", split="train")),
            DecontamConfig(),
            stats=stats,
            removed=removed,
        )
    )
    assert stats["drop:decontam"] == 95 and len(removed) == 95 and len(kept) == 7473 - 95
    assert {h.eval_set for h in removed} <= {"gsm8k:test", "math500:test", "aime24:test", "amc23:test"}
    hit = removed[0]
    assert len(hit.ngram.split()) == 8 and hit.eval_id and hit.problem_id.startswith("gsm8k-train-")
    # the n-gram really is in both texts
    train = {p.id: p for p in iter_problems(SourceConfig(kind="builtin", name="gsm8k", split="train"))}
    assert hit.ngram in " ".join(words(train[hit.problem_id].prompt))


def test_paraphrase_with_other_punctuation_and_case_is_caught():
    idx = DecontamIndex.from_config(DecontamConfig())
    p = Problem(id="x", prompt="JANET'S ducks -- lay 16 eggs per day; she eats THREE for breakfast!", answer="1")
    hit = idx.check(p)
    assert hit is not None and hit.eval_set == "gsm8k:test" and hit.eval_id == "gsm8k-test-0000"
    assert hit.ngram in " ".join(words(GSM_TEST_0))
    clean = Problem(id="y", prompt="Compute the sum of the first ten positive integers please.", answer="55")
    assert idx.check(clean) is None


def test_allow_list_and_n_are_configurable():
    p = Problem(id="x", prompt="Janet’s ducks lay 16 eggs per day and nothing else is alike", answer="1")
    assert DecontamIndex.from_config(DecontamConfig()).check(p) is not None
    unrelated = DecontamConfig(allow=["on the third day the total number of"])
    assert DecontamIndex.from_config(unrelated).check(p) is not None
    # the only shared 8-gram is "janet s ducks lay 16 eggs per day"; allowing it clears the problem
    allowed = DecontamConfig(allow=["JANET'S ducks lay 16 eggs, per day."])
    assert DecontamIndex.from_config(allowed).check(p) is None
    assert DecontamIndex.from_config(DecontamConfig(n=13)).check(p) is None


def test_allow_entry_shorter_than_n_is_an_error():
    with pytest.raises(ConfigError, match=r"curate\.decontam\.allow: 'on the third day' has 4 words"):
        DecontamIndex.from_config(DecontamConfig(allow=["on the third day"]))


def test_extra_eval_file_and_shipped_off(tmp_path):
    f = tmp_path / "my_eval.jsonl"
    f.write_text(json.dumps({"id": "e1", "question": "a b c d e f g h i j k", "answer": "1"}) + "\n")
    cfg = DecontamConfig(shipped=False, eval_sets=[str(f), "aime24"])
    idx = DecontamIndex.from_config(cfg)
    assert set(idx.sets) == {"my_eval.jsonl", "aime24:test"}
    hit = idx.check(Problem(id="p", prompt="x y b c d e f g h i z", answer="1"))
    assert hit is not None and (hit.eval_set, hit.eval_id, hit.ngram) == ("my_eval.jsonl", "e1", "b c d e f g h i")
    gsm_like = Problem(id="q", prompt=GSM_TEST_0, answer="1")
    assert idx.check(gsm_like) is None  # gsm8k:test not checked when shipped: false


def test_disabled_passes_everything_through():
    p = Problem(id="x", prompt=GSM_TEST_0, answer="1")
    stats = Counter()
    assert list(decontam_filter([p], DecontamConfig(enabled=False), stats=stats)) == [p]
    assert stats["drop:decontam"] == 0
    summary = decontam_summary(DecontamConfig(enabled=False), [])
    assert summary["enabled"] is False and summary["eval_sets"] == []


def test_summary_lists_every_removal():
    removed = []
    p = Problem(id="x", prompt=GSM_TEST_0, answer="1", source="mine")
    list(decontam_filter([p], DecontamConfig(), removed=removed))
    s = decontam_summary(DecontamConfig(), removed)
    assert s["removed_count"] == 1 and s["by_eval_set"] == {"gsm8k:test": 1}
    assert s["removed"][0] == {
        "problem_id": "x",
        "eval_set": "gsm8k:test",
        "eval_id": "gsm8k-test-0000",
        "ngram": removed[0].ngram,
        "source": "mine",
    }
    assert "math500:test" in s["eval_sets"] and s["n"] == 8


def test_bad_eval_set_names():
    with pytest.raises(DataError, match=r"data set 'math500' has no split 'train'; its splits are: test"):
        DecontamIndex.from_config(DecontamConfig(eval_sets=["math500:train"]))
    with pytest.raises(DataError, match=r"unknown data set 'mth500'; shipped sets are: aime24:test, "):
        DecontamIndex.from_config(DecontamConfig(eval_sets=["mth500"]))
    with pytest.raises(ConfigError, match=r"missing\.jsonl: no such file"):
        DecontamIndex.from_config(DecontamConfig(eval_sets=["missing.jsonl"]))
