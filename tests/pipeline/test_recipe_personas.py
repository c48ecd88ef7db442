"""The Sky-T1 recipe at toy scale against teachers that answer like the real ones (tracesynth.sim personas):
harvest → verify → curate → export through the Python API, and the dataset must hold the teacher's reasoning.

QwQ-32B-Preview (Sky-T1's teacher) writes its thinking as plain text with no delimiter; a self-hosted
R1-distill without a reasoning parser sends only the closing ``</think>``; Sky-T1's own format wraps
thought and solution in ``<|begin_of_thought|>`` / ``<|begin_of_solution|>`` blocks. Only the teacher,
the problems and the student change (``--set`` style overrides); verification and curation stay the
recipe's own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harvest_kit import rows
from repo import REPO

import tracesynth
from tracesynth.config import load_recipe
from tracesynth.sim import SimOptions

PROBLEMS = 40


RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_names_its_teachers_persona(path: Path) -> None:
    recipe = load_recipe(path, [])
    options = SimOptions(**recipe.teacher.sim.options)  # a scaled-down run starts exactly this simulator
    assert "reasoning" in recipe.teacher.sim.options, f"{path.name}: teacher.sim.options.reasoning not named"
    if recipe.teacher.model == "Qwen/QwQ-32B-Preview":
        assert options.reasoning == "undelimited"


def toy_sky_t1(tmp_path: Path, persona: str | None) -> tracesynth.Recipe:
    # the pool doubles as the simulator's answer key, so it answers the word problems (some wrongly)
    pool = tmp_path / "pool.jsonl"
    with (REPO / "data" / "gsm8k_train.jsonl").open() as src:
        pool.write_text("".join(next(src) for _ in range(PROBLEMS)))
    return load_recipe(
        REPO / "recipes" / "sky_t1.yaml",
        [
            f"run_dir={tmp_path / 'run'}",
            "teacher.sim.enabled=true",
            f"teacher.sim.options.answer_key={pool}",
            "teacher.sim.options.wrong_rate=0.2",
            "teacher.sim.options.seed=3",
            *([f"teacher.sim.options.reasoning={persona}"] if persona else []),  # None: the recipe's own
            "teacher.api_key_env=null",
            "teacher.budget_usd=1",
            f"source={{kind: jsonl, path: {pool}, columns: {{question: problem, answer: answer}}}}",
            "verify.by_domain={}",
            "student={init: tiny}",
        ],
    )


@pytest.mark.parametrize("persona", [None, "sky_t1", "r1_distill"], ids=["recipe's (QwQ)", "sky_t1", "r1_distill"])
def test_sky_t1_at_toy_scale_keeps_the_teachers_reasoning(tmp_path, persona):
    r = toy_sky_t1(tmp_path, persona)
    assert r.teacher.sim.options["reasoning"] == (persona or "undelimited")
    assert tracesynth.harvest(r, quiet=True).done == PROBLEMS
    v = tracesynth.verify(r)
    assert v.counts["math"]["fail"] > 0  # the planted wrong answers are caught ...
    assert v.counts["format"].get("pass", 0) >= v.counts["math"]["pass"]  # ... and the format gate drops no good one
    tracesynth.curate(r)
    res = tracesynth.export(r)
    assert 0 < res.rows == v.counts["math"]["pass"]
    samples = {s["id"]: s for s in rows(Path(r.run_dir))}
    import datasets

    for row in datasets.load_dataset(res.dataset_dir, split="train"):
        reply = row["messages"][-1]["content"]
        m = re.fullmatch(r"<think>\n(.+)\n</think>\n\n(.+)", reply, re.S)
        assert m is not None, reply
        thought, answer = m.groups()
        sent = samples[row["sample_id"]]
        raw = (sent["reasoning"] or "") + (sent["content"] or "")
        # the teacher's own thinking, verbatim, inside the student's delimiters; its boxed answer after them
        assert "the result I get is" in thought and thought in raw
        assert "\\boxed{" + row["answer"] + "}" in answer
        assert not re.search(r"<\|(begin|end)_of_(thought|solution)\|>|</?think>", thought + answer)
