"""`tracesynth sft` for real under `accelerate launch` with 2 processes on the CPU (gloo): FSDP and DDP.

* FSDP: the shipped recipes/accelerate/fsdp.yaml, with only what a CPU box must change on the command
  line (``--num_processes 2 --mixed_precision no``, ``ACCELERATE_USE_CPU=1``), runs the tiny student's
  SFT through the real CLI. accelerate (1.16) never enables FSDP on a CPU job by itself — it runs DDP and
  drops the FSDP plugin (the second test shows it) — so this one launches through
  ``cpu_fsdp_launch.py``, which lifts exactly that gate and records what each rank held after its first
  step: the parameters must be DTensor shards, half the model per rank, with the optimizer state to match,
  and the layers checkpointed by FSDP, not by the trainer.
* DDP: the same launch with plain ``-m tracesynth`` (no lifted gate): 2-process data parallel over gloo,
  and tracesynth says that FSDP was asked for and not given.

Each run trains 4 steps on 32 rows; the saved student must load and generate.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from distill_kit import make_dataset, problems, recipe_for
from repo import RECIPES

from tracesynth.errors import UserError
from tracesynth.stages.train.args import checkpointing_field

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "cpu_fsdp_launch.py"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _recipe(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    make_dataset(recipe_for(run), problems(32, digits=1, seed=7))
    sft = {
        "max_steps": 4,
        "per_device_train_batch_size": 4,  # x 2 processes = 8 rows a step
        "logging_steps": 1,
        "save_strategy": "no",
        "disable_tqdm": True,
        "gradient_checkpointing": True,  # asked for, and dropped: fsdp.yaml's FSDP checkpoints the layers
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(run), "student": {"init": "tiny"}, "sft": sft}))
    return path


def _launch(tmp_path: Path, *program: str, probe: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",  # transformers and accelerate: a CPU job (gloo), not a GPU one
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if probe is not None:
        env["TRACESYNTH_PROBE_DIR"] = str(probe)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.accelerate_cli",
        "launch",
        "--config_file",
        str(RECIPES / "accelerate" / "fsdp.yaml"),
        "--num_machines",
        "1",
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        str(_free_port()),
        *program,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)


def _generates(student: Path) -> None:
    import torch

    from tracesynth.stages.train.student import load_student

    model, tok = load_student(student)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 3 + 4?"}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]


def _weights_moved(run: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(run / "student" / "checkpoints" / "init").state_dict()
    after = AutoModelForCausalLM.from_pretrained(run / "student").state_dict()
    assert set(before) == set(after)
    assert all(not torch.equal(before[k], after[k]) for k in after)  # every tensor trained, none lost in the gather


def test_sft_with_fsdp_on_two_cpu_processes(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    probe = tmp_path / "probe"
    probe.mkdir()
    res = _launch(tmp_path, str(LAUNCHER), "sft", str(recipe), probe=probe)
    assert res.returncode == 0, res.stderr[-4000:]

    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]  # both ranks trained
    for r, info in enumerate(ranks):
        assert info["rank"] == r and info["world_size"] == 2 and info["backend"] == "gloo"
        assert info["distributed_type"] == "FSDP" and info["fsdp_version"] == 2
        assert info["param_classes"] == ["DTensor"]  # every parameter is a shard, none replicated
        # half the model on each rank (dim-0 shards: the two halves may differ by a row)
        assert 0.45 * info["params_global"] < info["params_local"] < 0.55 * info["params_global"]
        assert info["optimizer_state_local"] == 2 * info["params_local"]  # AdamW's two moments, sharded alike
        assert info["optimizer_state_global"] == 2 * info["params_global"]
        # exactly one activation checkpointing: FSDP's, not the trainer's. accelerate 1.16 wraps each of the 2
        # decoder layers; 1.8-1.12 wrapped each layer's 4 children (attention, MLP, 2 norms) instead
        assert info["fsdp_activation_checkpointing"] is True and info["checkpoint_wrapped"] in (2, 8)
        assert info["trainer_checkpointing"] is False
    assert sum(info["params_local"] for info in ranks) == ranks[0]["params_global"]

    assert "sft.gradient_checkpointing: off, because FSDP checkpoints the layers itself" in res.stderr
    assert sum(line.startswith("sft: ") and " steps, " in line for line in res.stderr.splitlines()) == 1  # rank 0
    run = tmp_path / "run"
    train = json.loads((run / "student" / "train.json").read_text())
    assert train["steps"] == 4 and train["world_size"] == 2
    assert train["distributed"] == {
        "type": "FSDP",
        "world_size": 2,
        "fsdp_version": 2,
        "fsdp_activation_checkpointing": True,
    }
    assert train["params"] == ranks[0]["params_global"]  # the full model, not one shard
    checkpointing = {k: v for k, v in train["sft_args"].items() if k.endswith("_checkpointing")}
    assert checkpointing == {checkpointing_field(): False}  # the recipe's gradient_checkpointing was dropped
    _weights_moved(run)
    _generates(run / "student")


def test_without_the_lifted_gate_accelerate_runs_ddp_and_says_so(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    res = _launch(tmp_path, "-m", "tracesynth", "sft", str(recipe))
    assert res.returncode == 0, res.stderr[-4000:]
    assert "sft: FSDP was asked for but accelerate runs MULTI_CPU on cpu" in res.stderr
    assert "Traceback" not in res.stderr
    run = tmp_path / "run"
    train = json.loads((run / "student" / "train.json").read_text())
    assert train["steps"] == 4 and train["distributed"] == {"type": "MULTI_CPU", "world_size": 2}
    assert train["tokens_seen"] > 0
    _weights_moved(run)
    _generates(run / "student")


def test_processes_that_do_not_form_one_job_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. `accelerate launch` of a GPU config on a CPU-only box without ACCELERATE_USE_CPU: every
    # process would see a world of 1 and train (and write) its own copy
    from types import SimpleNamespace

    from tracesynth.stages.train.trainer import _check_world

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="2 processes were launched but transformers sees a world size of 1"):
        _check_world(SimpleNamespace(world_size=1, device="cpu"))
    _check_world(SimpleNamespace(world_size=2, device="cpu"))
    monkeypatch.setenv("WORLD_SIZE", "1")
    _check_world(SimpleNamespace(world_size=1, device="cpu"))
