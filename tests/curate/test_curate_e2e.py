"""Sources → harvest (simulated teacher) → verify → curate → export, in process: the stages agree on ids and files."""

from __future__ import annotations

import json

import pytest

from tracesynth.config import Recipe


@pytest.mark.slow
def test_builtin_problems_through_every_data_stage(tmp_path):
    import datasets

    from tracesynth.stages.curate import curate
    from tracesynth.stages.export.dataset import export
    from tracesynth.stages.harvest import harvest
    from tracesynth.stages.verify import verify

    recipe = Recipe.model_validate(
        {
            "name": "e2e",
            "run_dir": str(tmp_path / "run"),
            "source": {"kind": "builtin", "name": "arith_sample", "limit": 12},
            "teacher": {
                "model": "sim-reasoner",
                "api_key_env": None,
                "n": 2,
                "sim": {"enabled": True, "options": {"wrong_rate": 0.3, "seed": 3}},
            },
            "verify": {"verifiers": ["math"]},
        }
    )
    harvest(recipe, quiet=True)
    verify(recipe)
    res = curate(recipe)
    rep = json.loads((tmp_path / "run" / "curate.json").read_text())
    read = rep["steps"][0]
    assert read["in"] == 24 and read["dropped"] == {}  # every harvested sample is the recipe's own (no "stale")
    keep = next(s for s in rep["steps"] if s["step"] == "keep:passing")
    assert keep["dropped"].get("failed", 0) > 0  # the simulator's wrong answers were caught
    assert 0 < res.traces <= 12
    out = export(recipe)
    ds = datasets.load_dataset(out.dataset_dir, split="train")
    assert len(ds) == res.traces and all(r["verdicts"][0]["status"] == "pass" for r in ds)
    assert ds[0]["messages"][-1]["content"].startswith("<think>\n")
