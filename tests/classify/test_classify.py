"""The classify stage against the simulated teacher: MSC labels land, are cached, costed, and curate draws over them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harvest_kit import PRICES, rows

from tracesynth.config import Recipe
from tracesynth.sim.tasks import NO_SUBJECT

QUESTIONS = [
    "What is the area of a triangle with base 6 and height 4?",
    "A circle has radius 3. What is its diameter, 3 + 3?",
    "What is the remainder when 17 is divided by 5?",
    "Is 7 a prime? Compute 7 + 0.",
    "How many ways can you arrange 3 books? Compute 3 * 2 * 1.",
    "A fair coin is tossed: what is the probability of heads times 4, as 2 + 2?",
    f"{NO_SUBJECT} What is 2 + 5?",
    "What is 12 + 30?",
]


def _problems(tmp: Path) -> Path:
    path = tmp / "q.jsonl"
    with path.open("w") as fh:
        for i, q in enumerate(QUESTIONS):
            fh.write(json.dumps({"id": f"q{i}", "problem": q, "answer": "0"}) + "\n")
    return path


def _recipe(tmp: Path, teacher: str, classifier: str, **classify: Any) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "c",
            "run_dir": str(tmp / "run"),
            "source": {"kind": "jsonl", "path": str(_problems(tmp)), "domain": "math"},
            "teacher": {"model": "sim", "base_urls": [teacher], "api_key_env": None, "prices": PRICES},
            "verify": {"verifiers": ["format"], "workers": 1},
            "curate": {"keep": "all", "decontam": {"enabled": False}, "select": {"size": 4, "diversity": True}},
            "classify": {
                "enabled": True,
                "model": "claude-sim",
                "base_urls": [classifier],
                "api_key_env": None,
                "prices": {"input": 3.0, "output": 15.0},
                "concurrency": 3,
                **classify,
            },
        }
    )


def test_labels_land_are_cached_costed_and_curate_draws_over_them(tmp_path, sim_teacher):
    from tracesynth.accounting.receipt import build_receipt
    from tracesynth.stages.classify import classify, domains
    from tracesynth.stages.curate import curate
    from tracesynth.stages.harvest import harvest

    teacher, classifier = sim_teacher(seed=1), sim_teacher(seed=2)
    recipe = _recipe(tmp_path, teacher.base_url, classifier.base_url)
    harvest(recipe, quiet=True)
    res = classify(recipe)
    run = Path(recipe.run_dir)
    labels = domains(run)
    assert classifier.stats()["requests"] == len(QUESTIONS) and res.done == len(QUESTIONS) - 1
    assert labels["q0"] == labels["q1"] == "Geometry" and labels["q2"] == labels["q3"] == "Number theory"
    assert labels["q4"] == "Combinatorics" and labels["q5"] == "Probability theory and stochastic processes"
    assert "q6" not in labels  # the reply ended on no code: an item error, the problem keeps its own domain
    (fail,) = rows(run / "classify_failures.jsonl")
    assert fail["id"] == "q6" and fail["kind"] == "unparseable" and fail["cost_usd"] > 0
    codes = {r["id"]: r["label"] for r in rows(run / "domains.jsonl")}
    assert codes["q0"] == "51" and codes["q2"] == "11"

    again = classify(recipe.model_copy(update={"classify": recipe.classify.model_copy(update={"item_retries": 0})}))
    assert classifier.stats()["requests"] == len(QUESTIONS) and again.status == "nothing"  # nothing asked twice

    line = next(x for x in build_receipt(run).lines if x.item == "classify")
    assert line.usd > 0 and "7 problems labelled by claude-sim" in line.detail
    assert line.usd == pytest.approx(sum(r["cost_usd"] for r in rows(run / "domains.jsonl")) + fail["cost_usd"])

    curate(recipe)
    out = json.loads((run / "curate.json").read_text())["output"]
    traces = rows(run / "traces.jsonl")
    assert len(traces) == 4 and len(out["domains"]) > 1  # s1's draw over several domains, not "math" only
    for t in traces:  # each problem drawn under its label; the unlabelled one under its source domain
        assert t["metadata"]["select_domain"] == labels.get(t["problem_id"], "math")

    # the same run without the labels: every problem is "math" and the draw has one domain
    plain = recipe.model_copy(update={"classify": recipe.classify.model_copy(update={"enabled": False})})
    curate(plain)
    assert json.loads((run / "curate.json").read_text())["output"]["domains"] == {"math": 4}


def test_unlabelled_run_and_bad_config(tmp_path, sim_teacher):
    from tracesynth.errors import TracesynthError
    from tracesynth.stages.ask import Unusable
    from tracesynth.stages.classify import classify, domains
    from tracesynth.stages.classify.stage import parse_code

    assert domains(tmp_path) == {}
    assert parse_code("Reasoning...\n**05**.") == ("05", "Combinatorics")
    for bad in ("no code", "Subject 05, I think", "99"):
        with pytest.raises(Unusable):
            parse_code(bad)
    teacher = sim_teacher()
    with pytest.raises(TracesynthError, match=r"classify\.enabled"):
        classify(_recipe(tmp_path, teacher.base_url, teacher.base_url, enabled=False))
    with pytest.raises(TracesynthError, match=r"classify\.budget_usd: no price known"):
        classify(
            _recipe(
                tmp_path,
                teacher.base_url,
                "https://api.openai.com/v1",
                prices=None,
                budget_usd=1.0,
                model="not-a-priced-model",
            )
        )
