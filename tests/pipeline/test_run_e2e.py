"""`tracesynth run` end to end through the real CLI: the demo and the published recipes, scaled down.

Each run starts the simulated teacher on 127.0.0.1, harvests, verifies, curates, exports, trains the
tiny student on the CPU for a few steps, evaluates it and writes the report. Sizes are cut with
--set overrides only, so the recipes themselves are what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from repo import REPO

ROOT = REPO
pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "tracesynth", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


# A tiny student trained for a handful of steps: this checks the plumbing, not the learning
# (tests/test_evaluate.py and the full `make demo` check the learning).
TINY_TRAINING = [
    "--set",
    "sft.max_steps=4",
    "--set",
    "sft.logging_steps=1",
    "--set",
    "sft.per_device_train_batch_size=8",
    "--set",
    "eval.n=1",
    "--set",
    "eval.max_new_tokens=24",
]


def test_demo_recipe_small(tmp_path):
    run_dir = tmp_path / "demo"
    args = [
        "run",
        "recipes/demo.yaml",
        "--quiet",
        "--set",
        f"run_dir={run_dir}",
        "--set",
        "source.size=60",
        "--set",
        "eval.source.size=12",
        "--set",
        "eval.thinking_caps=[8]",
        *TINY_TRAINING,
    ]
    res = run_cli(*args)
    assert "pass@1 verified (3 seeds)" in res.stdout and "greedy verified (3 seeds)" in res.stdout
    assert "total cost (USD)" in res.stdout
    report = (run_dir / "report.md").read_text()
    for section in (
        "## Funnel",
        "## Verdicts",
        "## What verification catches and what it does not",
        "## Results over seeds (3 per student)",
        "## What this shows, and what it does not",
        "## Student accuracy",
        "## Accuracy vs thinking tokens (budget forcing)",
        "## Cost receipt",
    ):
        assert section in report, section
    assert {p.name for p in (run_dir / "plots").glob("*.png")} >= {
        "funnel.png",
        "verdicts.png",
        "lengths.png",
        "accuracy.png",
        "loss.png",
        "thinking_caps.png",
    }
    harvest = json.loads((run_dir / "harvest.json").read_text())
    assert harvest["counts"]["done_total"] == harvest["counts"]["samples_expected"] > 0
    verify = json.loads((run_dir / "verify.json").read_text())
    assert verify["counts"]["math"]["fail"] > 0  # the simulated teacher's wrong answers were caught
    students = ("verified", "unverified", "answers", "answers-compute")
    variants = [f"{s}-s{k}" for s in students for k in (1, 2, 3)]
    assert sorted(d.name for d in (run_dir / "variants").iterdir()) == sorted(variants)
    traces = {name: sum(1 for _ in (run_dir / "variants" / name / "traces.jsonl").open()) for name in variants}
    assert traces["unverified-s1"] > traces["verified-s1"] == traces["answers-s1"] == traces["verified-s3"] > 0
    for name in variants:
        vdir = run_dir / "variants" / name
        assert (vdir / "dataset" / "README.md").exists()
        train = json.loads((vdir / "student" / "train.json").read_text())
        recipe = json.loads((vdir / "recipe.json").read_text())
        assert recipe["sft"]["seed"] == int(name[-1]) and train["sft_args"]["seed"] == int(name[-1])
        if name.startswith("answers-compute"):
            # the same FLOPs as the verified student of its seed: answers are shorter, so more steps
            assert train["steps"] == recipe["sft"]["max_steps"] > 4
        else:
            assert train["steps"] == 4
        assert list((vdir / "student" / "checkpoints").glob("checkpoint-*/trainer_state.json"))  # the loss curve
        ev = json.loads((vdir / "eval.json").read_text())
        assert "after" in ev and ev["models"]["greedy"]["protocol"]["temperature"] == 0
        assert ev["models"]["greedy"]["protocol"]["n"] == 1 and "thinking_caps" not in ev["models"]["greedy"]
        assert ("thinking_caps" in ev["after"]) == (name == "verified-s1")  # budget forcing: one seed
    # seeds differ in initial weights and data order
    w = [(run_dir / "variants" / f"verified-s{k}" / "student" / "model.safetensors").read_bytes() for k in (1, 2)]
    assert w[0] != w[1]
    # the untrained baseline is evaluated once, for the first variant
    assert "before" in json.loads((run_dir / "variants" / "verified-s1" / "eval.json").read_text())
    assert "before" not in json.loads((run_dir / "variants" / "answers-s1" / "eval.json").read_text())

    # a second run resumes: nothing is asked or paid again
    before = (run_dir / "samples.jsonl").read_bytes()
    run_cli(*args)
    assert (run_dir / "samples.jsonl").read_bytes() == before
    again = json.loads((run_dir / "harvest.json").read_text())
    assert again["counts"]["new"] == 0


def test_published_recipes_validate():
    for name in ("demo", "s1k", "s1k_1.1", "sky_t1", "gsm8k"):
        res = run_cli("recipe", "check", f"recipes/{name}.yaml")
        assert f"recipes/{name}.yaml: ok" in res.stdout


# What turns a published GPU recipe into a CPU run against the simulated teacher: the teacher, the
# problems, the student and the training sizes change; curation, verification and the SFT
# hyperparameters (epochs aside) stay the recipe's own.
def offline(tmp_path: Path, pool: str) -> list[str]:
    return [
        "--quiet",
        "--set",
        f"run_dir={tmp_path / 'run'}",
        "--set",
        "teacher.sim.enabled=true",
        # key by key: the recipe's own teacher.sim.options (its teacher's persona) stay
        "--set",
        f"teacher.sim.options.answer_key={pool}",
        "--set",
        "teacher.sim.options.wrong_rate=0.2",
        "--set",
        "teacher.sim.options.seed=3",
        "--set",
        "teacher.api_key_env=null",
        "--set",
        "teacher.budget_usd=1",
        # the model passes a recipe enables (classify, rewrite) ask a simulator of their own, never a provider
        "--set",
        "classify.sim.enabled=true",
        "--set",
        "rewrite.sim.enabled=true",
        "--set",
        f"source={{kind: jsonl, path: {pool}, columns: {{question: problem, answer: answer}}, limit: 24}}",
        "--set",
        "student={init: tiny}",
        "--set",
        "sft.bf16=false",
        "--set",
        "sft.gradient_checkpointing=false",
        "--set",
        "sft.max_length=1024",
        "--set",
        "sft.gradient_accumulation_steps=1",
        "--set",
        "eval.backend=local",
        "--set",
        "eval.source={kind: builtin, name: gsm8k, split: test, limit: 6}",
        "--set",
        "eval.thinking_caps=[]",
        "--set",
        "eval.wait_extensions=[]",
        *TINY_TRAINING,
    ]


@pytest.mark.parametrize("recipe", ["s1k", "s1k_1.1", "sky_t1", "gsm8k"])
def test_published_recipe_runs_end_to_end_scaled_down(tmp_path, recipe):
    # the pool doubles as the simulator's answer key (small, so it also finds questions inside a template)
    pool = tmp_path / "pool.jsonl"
    with (ROOT / "data" / "gsm8k_train.jsonl").open() as src:
        pool.write_text("".join(next(src) for _ in range(40)))
    extra = ["--set", "curate.select.size=10"] if recipe == "s1k" else ["--set", "verify.by_domain={}"]
    run_cli("run", f"recipes/{recipe}.yaml", *offline(tmp_path, pool), *extra)
    run = tmp_path / "run"
    curate = json.loads((run / "curate.json").read_text())
    assert curate["steps"][-1]["out"] > 0
    if recipe == "s1k":
        assert curate["steps"][-1]["out"] <= 10
    assert list((run / "dataset" / "data").glob("train-*.parquet"))
    # the training text holds the teacher's reasoning, whatever the persona sent it as
    import datasets

    rows = datasets.load_dataset(str(run / "dataset"), split="train")
    samples = {json.loads(line)["id"]: json.loads(line) for line in (run / "samples.jsonl").open()}
    traces = {json.loads(line)["sample_id"]: json.loads(line) for line in (run / "traces.jsonl").open()}
    assert len(rows) == len(traces) > 0
    for row in rows:
        assistant = next(m["content"] for m in row["messages"] if m["role"] == "assistant")
        s = samples[row["sample_id"]] if "sample_id" in row else None
        reasoning = (s or {}).get("reasoning") or ""
        assert "<think>" in assistant or "<|begin_of_thought|>" in assistant, assistant[:200]
        if reasoning:
            assert reasoning.strip()[:80] in assistant
    train = json.loads((run / "student" / "train.json").read_text())
    assert train["steps"] == 4
    assert json.loads((run / "eval.json").read_text())["after"]["n_problems"] == 6
    assert "## Cost receipt" in (run / "report.md").read_text()
