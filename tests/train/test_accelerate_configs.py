"""The shipped multi-GPU configs load in accelerate and produce the launch environment we document.

No GPU here: we parse `accelerate launch --config_file … -m tracesynth sft RECIPE` with accelerate's
own parser and build the environment its launcher would hand to each process, without launching.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from repo import RECIPES

from tracesynth.stages.train.args import default_sft_args

CONFIGS = RECIPES / "accelerate"


def _launch_args(config: Path):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    argv = ["--config_file", str(config), "-m", "tracesynth", "sft", "recipes/s1k.yaml"]
    args, defaults, mp_from_config = _validate_launch_command(launch_command_parser().parse_args(argv))
    return args, defaults, mp_from_config


def test_fsdp_config_is_full_shard_with_decoder_layer_wrap() -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils.launch import prepare_multi_gpu_env

    raw = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())
    cfg = load_config_from_file(str(CONFIGS / "fsdp.yaml"))
    assert isinstance(cfg, ClusterConfig) and cfg.distributed_type.value == "FSDP"
    assert (cfg.num_machines, cfg.num_processes, cfg.mixed_precision) == (2, 16, "bf16")  # s1: 16 H100s
    assert raw["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"

    args, _, _ = _launch_args(CONFIGS / "fsdp.yaml")
    assert args.use_fsdp and args.module and args.training_script == "tracesynth"
    assert args.training_script_args == ["sft", "recipes/s1k.yaml"]
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Qwen2DecoderLayer"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "true"


def test_zero3_config_shards_everything_on_8_gpus() -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    cfg = load_config_from_file(str(CONFIGS / "zero3.yaml"))
    assert cfg.distributed_type.value == "DEEPSPEED" and cfg.num_processes == 8  # Sky-T1: 8 H100s
    assert cfg.deepspeed_config["zero_stage"] == 3
    args, defaults, mp_from_config = _launch_args(CONFIGS / "zero3.yaml")
    assert args.use_deepspeed and args.training_script_args == ["sft", "recipes/s1k.yaml"]
    # what accelerate's launch_command does before calling the DeepSpeed launcher
    fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mp_from_config else [])]
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    _, env = prepare_deepspeed_cmd_env(args)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"] == "none"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_fsdp_checkpointing_replaces_the_trainers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_sft_args(on_gpu=True, fmt="messages", tiny=False)["activation_checkpointing"] is True
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")  # what `accelerate launch` exports for fsdp.yaml
    assert default_sft_args(on_gpu=True, fmt="messages", tiny=False)["activation_checkpointing"] is False
