"""s1's difficulty filter from the recipe: `tracesynth run` asks each weak model, curation drops what it solved."""

from __future__ import annotations

import json
from pathlib import Path

from harvest_kit import recipe_dict, rows

from tracesynth.config import Recipe
from tracesynth.pipeline import run


def test_weak_models_are_harvested_verified_and_their_solved_problems_dropped(tmp_path: Path, sim_teacher) -> None:
    sim = sim_teacher(wrong_rate_range="0.2:0.8", seed=5)
    data = recipe_dict(tmp_path, sim.base_url, 40, until_verified=4, sampling={"max_tokens": 600, "seed": 0})
    data["curate"] = {
        "keep": "passing",
        "select": {"weak_models": [{"name": "qwen7b", "model": "Qwen/Qwen2.5-7B-Instruct", "prices": {}}]},
    }
    recipe = Recipe.model_validate(data)
    run(recipe, quiet=True, stages=("harvest", "verify", "curate"))

    weak = tmp_path / "run" / "weak" / "qwen7b"
    asked = rows(weak / "samples.jsonl")
    assert len(asked) == 40 and {s["model"] for s in asked} == {"Qwen/Qwen2.5-7B-Instruct"}
    assert all(s["metadata"].get("max_tokens") == 32768 for s in asked)  # s1's bulk_inference settings
    weak_solved = {v["problem_id"] for v in rows(weak / "verdicts.jsonl") if v["status"] == "pass"}
    assert 0 < len(weak_solved) < 40
    teacher_solved = {v["problem_id"] for v in rows(tmp_path / "run" / "verdicts.jsonl") if v["status"] == "pass"}
    kept = {t["problem_id"] for t in rows(tmp_path / "run" / "traces.jsonl")}
    assert kept == teacher_solved - weak_solved and kept
    curate = json.loads((tmp_path / "run" / "curate.json").read_text())
    assert "weak_solved" in json.dumps(curate)
