"""Verifier fidelity on the shipped answers of real sets (issue 10), through the verify stage's pool.

For every distinct reference answer of MATH-500, GSM8K (train and test), AIME 2024 and AMC 2023:

* ``\\boxed{gold}`` must pass (at least 99.5% of MATH-500, all of the others); AIME's ``025``
  must also equal ``25``;
* the answer "changed by one" must fail with tag ``mismatch``: the first integer in it plus one
  (``\\frac{1}{2}`` → ``\\frac{2}{2}``, ``52_8`` → ``53_8``, ``025`` → ``26``), a multiple-choice
  letter moved on by one (``\\text{(C)}`` → ``\\text{(D)}``), ``+ 1`` appended to a symbolic
  answer without digits (``\\pi`` → ``\\pi + 1``).

Exceptions, each explained: the five MATH-500 answers that are words (``\\text{Evelyn}``,
``\\text{Navin}``, ``\\text{east}``, ``\\text{ellipse}``, ``\\text{even}``) have no "plus one";
they are changed to another word of the same set instead and must fail just the same.
Distinct answers are checked once (the verdict depends only on the answer text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from repo import DATA

from tracesynth.config import load_recipe
from tracesynth.records import Problem, Sample, Verdict
from tracesynth.rundir.store import JsonlFile
from tracesynth.stages.verify.stage import verify

SETS = ("math500", "gsm8k_test", "gsm8k_train", "aime24", "amc23")
WORD_ANSWERS = {"\\text{Evelyn}", "\\text{Navin}", "\\text{east}", "\\text{ellipse}", "\\text{even}"}


def load_set(name: str) -> list[dict]:
    """A shipped set (data/ is part of the repository: a missing file is a failure, not a skip)."""
    with (DATA / f"{name}.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def changed_by_one(gold: str) -> str | None:
    m = re.search(r"\d+", gold)
    if m:
        return gold[: m.start()] + str(int(m.group()) + 1) + gold[m.end() :]
    letter = re.fullmatch(r"\\text\{\(([A-D])\)\}", gold.strip())
    if letter:
        return "\\text{(" + chr(ord(letter.group(1)) + 1) + ")}"
    if gold in WORD_ANSWERS:
        return None
    return gold + " + 1"


def test_changed_by_one_rules() -> None:
    assert changed_by_one("025") == "26"
    assert changed_by_one("\\frac{1}{2}") == "\\frac{2}{2}"
    assert changed_by_one("52_8") == "53_8"
    assert changed_by_one("\\text{(C)}") == "\\text{(D)}"
    assert changed_by_one("\\pi") == "\\pi + 1"
    assert changed_by_one("\\text{east}") is None


@pytest.mark.slow
def test_gold_passes_and_off_by_one_fails_on_real_sets(tmp_path: Path) -> None:
    problems: list[Problem] = []
    samples: list[Sample] = []
    expect: dict[str, tuple[str, str, str]] = {}  # sample id -> (set, gold, expected status)
    for name in SETS:
        golds = sorted({str(r["answer"]) for r in load_set(name)})
        words = sorted(g for g in golds if g in WORD_ANSWERS)
        for i, gold in enumerate(golds):
            pid = f"{name}-{i}"
            problems.append(Problem(id=pid, prompt="q", answer=gold))
            answers = [(f"\\boxed{{{gold}}}", "pass")]
            other = changed_by_one(gold)
            if other is None:  # a word: change it to another word of the set
                other = words[(words.index(gold) + 1) % len(words)]
            answers.append((f"The answer is \\boxed{{{other}}}.", "fail"))
            if name == "aime24":
                answers.append((f"\\boxed{{{int(gold)}}}", "pass"))  # 025 equals 25
            for k, (content, status) in enumerate(answers):
                sid = f"{pid}-{k}"
                samples.append(Sample(id=sid, problem_id=pid, index=k, model="m", content=content, reasoning="r"))
                expect[sid] = (name, gold, status)
    with JsonlFile(tmp_path / "problems.jsonl", Problem) as ps:
        ps.extend(problems)
    with JsonlFile(tmp_path / "samples.jsonl", Sample) as ss:
        ss.extend(samples)
    result = verify(load_recipe(None, [f"run_dir={tmp_path}", "verify.verifiers=[math]", "verify.workers=2"]))
    assert result.written == len(samples)

    wrong: dict[str, list[tuple[str, str, str, str]]] = {name: [] for name in SETS}  # (expected, gold, got, why)
    for v in JsonlFile(tmp_path / "verdicts.jsonl", Verdict, key=None).iter():
        name, gold, status = expect[v.sample_id]
        if v.status != status or (status == "fail" and v.tag != "mismatch"):
            wrong[name].append((status, gold, v.answer or "", f"{v.status}/{v.tag}: {v.reason}"))
        if v.status != "pass":
            assert v.tag and v.reason, v  # every non-pass is tagged and explained
    assert len([w for w in wrong["math500"] if w[0] == "pass"]) <= 0.005 * 500, wrong["math500"]
    assert [w for w in wrong["math500"] if w[0] == "fail"] == []  # every changed answer failed
    for name in SETS[1:]:
        assert wrong[name] == [], (name, wrong[name])
    assert result.tags["math"] == {"mismatch": sum(1 for s in expect.values() if s[2] == "fail")}
