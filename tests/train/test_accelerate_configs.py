"""The shipped multi-GPU configs say what their headers claim, load in accelerate, and give one checkpointing.

No GPU here: we parse `accelerate launch --config_file … -m tracesynth sft RECIPE` with accelerate's
own parser and build the environment its launcher would hand to each process, without launching;
then we build, under that environment, the SFTConfig tracesynth would resolve and the FSDP / DeepSpeed
plugin accelerate would build. The real 2-process run is test_distributed.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo import RECIPES, REPO

from tracesynth.stages.train.args import (
    checkpointing_field,
    default_sft_args,
    fsdp_checkpoints_layers,
    installed_names,
    merge_sft_args,
    one_activation_checkpointing,
)

CONFIGS = RECIPES / "accelerate"
FSDP_CONFIGS = ["fsdp.yaml", "fsdp_2nodes.yaml"]
# what each header claims: accelerate's distributed type, machines, processes
TOPOLOGY = {
    "fsdp.yaml": ("FSDP", 1, 8),  # the default: one node of 8
    "fsdp_2nodes.yaml": ("FSDP", 2, 16),  # s1's paper run: 2 nodes x 8
    "zero3.yaml": ("DEEPSPEED", 1, 8),  # ZeRO-3, nothing offloaded
    "zero3_offload.yaml": ("DEEPSPEED", 1, 8),  # Sky-T1: ZeRO-3 + CPU offload, 8 H100s
}
BATCH_RULE = "Global batch = per_device_train_batch_size x gradient_accumulation_steps x num_processes"


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / name).read_text())


def _header(name: str) -> str:
    lines = (CONFIGS / name).read_text().splitlines()
    return "\n".join(line for line in lines if line.startswith("#"))


def _recipe_sft(name: str) -> dict[str, Any]:
    return yaml.safe_load((RECIPES / name).read_text())


def _launch_args(config: Path, *extra: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    argv = ["--config_file", str(config), *extra, "-m", "tracesynth", "sft", "recipes/s1k.yaml"]
    return _validate_launch_command(launch_command_parser().parse_args(argv))


def _fsdp_env(name: str, *extra: str) -> dict[str, str]:
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _, _ = _launch_args(CONFIGS / name, *extra)
    assert args.use_fsdp and args.module and args.training_script == "tracesynth"
    assert args.training_script_args == ["sft", "recipes/s1k.yaml"]
    return prepare_multi_gpu_env(args)


def _deepspeed_env(name: str) -> dict[str, str]:
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args, defaults, mp_from_config = _launch_args(CONFIGS / name)
    assert args.use_deepspeed and args.training_script_args == ["sft", "recipes/s1k.yaml"]
    # what accelerate's launch_command does before calling the DeepSpeed launcher
    fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mp_from_config else [])]
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    _, env = prepare_deepspeed_cmd_env(args)
    return env


def test_every_shipped_config_is_checked_here() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(TOPOLOGY)
    assert {p.name for p in CONFIGS.glob("*.json")} == {"ds_z3_offload_config.json"}


@pytest.mark.parametrize("name", sorted(TOPOLOGY))
def test_config_loads_with_the_topology_its_header_claims(name: str) -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    kind, machines, processes = TOPOLOGY[name]
    cfg = load_config_from_file(str(CONFIGS / name))
    assert isinstance(cfg, ClusterConfig) and cfg.distributed_type.value == kind
    assert (cfg.num_machines, cfg.num_processes) == (machines, processes)
    header = _header(name)
    assert BATCH_RULE in header, name  # every header says how the global batch follows the GPU count
    assert "accelerate launch --config_file recipes/accelerate/" + name in header


@pytest.mark.parametrize("name", FSDP_CONFIGS)
def test_fsdp_configs_full_shard_the_decoder_layers(name: str) -> None:
    raw = _raw(name)
    fsdp = raw["fsdp_config"]
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True  # FSDP2's FULL_SHARD
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"  # s1's fsdp_config_qwen.json
    assert raw["mixed_precision"] == "bf16"
    env = _fsdp_env(name)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "true"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Qwen2DecoderLayer"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "true"


def test_the_two_fsdp_configs_differ_only_in_topology() -> None:
    one, two = _raw("fsdp.yaml"), _raw("fsdp_2nodes.yaml")
    topology = {"num_machines", "num_processes", "main_process_ip", "main_process_port"}
    assert {k: v for k, v in one.items() if k not in topology} == {k: v for k, v in two.items() if k not in topology}


def test_s1k_keeps_the_papers_batch_of_16_on_one_node() -> None:
    recipe = _recipe_sft("s1k.yaml")
    sft, compute = recipe["sft"], recipe["compute"]
    assert compute["accelerate_config"] == "recipes/accelerate/fsdp.yaml"
    one_node = _raw("fsdp.yaml")["num_processes"]
    assert compute["gpus"] == one_node == 8
    assert sft["per_device_train_batch_size"] * sft["gradient_accumulation_steps"] * one_node == 16
    # the paper's 2 x 8: the same batch with gradient_accumulation_steps 1, as fsdp_2nodes.yaml's header says
    assert sft["per_device_train_batch_size"] * 1 * _raw("fsdp_2nodes.yaml")["num_processes"] == 16
    assert "--set sft.gradient_accumulation_steps=1 --set compute.gpus=16" in _header("fsdp_2nodes.yaml")
    # accumulating under FSDP syncs the sharded gradients every micro-batch, as s1's sft_slurm.sh
    assert sft["accelerator_config"] == {"gradient_accumulation_kwargs": {"sync_each_batch": True}}


def test_zero3_is_zero3_without_offload() -> None:
    cfg = _raw("zero3.yaml")["deepspeed_config"]
    assert cfg["zero_stage"] == 3
    assert (cfg["offload_param_device"], cfg["offload_optimizer_device"]) == ("none", "none")
    assert "NOT how Sky-T1 was trained" in _header("zero3.yaml")
    env = _deepspeed_env("zero3.yaml")
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"] == "none"
    assert env["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] == "none"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_zero3_offload_is_sky_t1s_deepspeed_json(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _raw("zero3_offload.yaml")["deepspeed_config"]
    path = REPO / cfg["deepspeed_config_file"]  # relative to the repository root, where the README launches
    assert path.is_file() and path.parent == CONFIGS
    ds = json.loads(path.read_text())
    # SkyThought's LLaMA-Factory examples/deepspeed/ds_z3_offload_config.json, unchanged
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["offload_param"] == {"device": "cpu", "pin_memory": True}
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert (zero["overlap_comm"], zero["contiguous_gradients"], zero["sub_group_size"]) == (True, True, 1e9)
    assert (zero["stage3_max_live_parameters"], zero["stage3_max_reuse_distance"]) == (1e9, 1e9)
    assert ds["bf16"] == {"enabled": "auto"} and ds["zero_allow_untested_optimizer"] is True
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert ds[key] == "auto", key  # filled from the trainer's arguments
    # accelerate refuses inline keys beside a config file: none is set, so nothing would be ignored
    assert set(cfg) == {"deepspeed_config_file", "deepspeed_multinode_launcher", "zero3_init_flag"}
    assert "mixed_precision" not in _raw("zero3_offload.yaml")
    env = _deepspeed_env("zero3_offload.yaml")
    assert env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == cfg["deepspeed_config_file"]
    # the plugin accelerate builds in each process from that environment (no deepspeed package needed)
    from accelerate.utils import DeepSpeedPlugin

    monkeypatch.chdir(REPO)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()  # raises if an inline key would be ignored (_deepspeed_config_checks)
    assert plugin.zero_stage == 3 and plugin.zero3_init_flag is True
    assert plugin.deepspeed_config["zero_optimization"]["offload_param"] == {"device": "cpu", "pin_memory": True}
    assert plugin.deepspeed_config["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}


def test_sky_t1_uses_the_offload_config_and_its_batch_of_96() -> None:
    recipe = _recipe_sft("sky_t1.yaml")
    sft, compute = recipe["sft"], recipe["compute"]
    assert compute["accelerate_config"] == "recipes/accelerate/zero3_offload.yaml"
    gpus = _raw("zero3_offload.yaml")["num_processes"]
    assert compute["gpus"] == gpus == 8
    assert sft["per_device_train_batch_size"] * sft["gradient_accumulation_steps"] * gpus == 96
    assert "offloaded to CPU" in (RECIPES / "sky_t1.yaml").read_text()


# -- exactly one activation checkpointing ----------------------------------------------------------


def _resolved_under(env: dict[str, str], recipe_sft: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp: Path):
    """The SFTConfig tracesynth resolves in a GPU process launched with ``env``, and the FSDP plugin there."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from trl import SFTConfig

    for key, value in env.items():  # the plugin writes FSDP_* back to os.environ: all restored after the test
        monkeypatch.setenv(key, value)
    args = one_activation_checkpointing(
        merge_sft_args(default_sft_args(on_gpu=True, fmt="messages", tiny=False), recipe_sft)
    )
    sft_keys = {k: v for k, v in args.items() if k != "model_init_kwargs"}
    config = SFTConfig(**{**installed_names(sft_keys), "bf16": False, "output_dir": str(tmp)})  # no bf16 on this CPU
    plugin = FullyShardedDataParallelPlugin() if env.get("ACCELERATE_USE_FSDP") == "true" else None
    return args, config, plugin


@pytest.mark.parametrize("name", FSDP_CONFIGS)
def test_fsdp_configs_get_exactly_one_checkpointing_whatever_the_recipe_says(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = _fsdp_env(name)
    s1k = _recipe_sft("s1k.yaml")["sft"]
    assert s1k["gradient_checkpointing"] is True  # the recipe asks for the trainer's
    with caplog.at_level(logging.WARNING, logger="tracesynth.stages.train.args"):
        args, config, plugin = _resolved_under(env, s1k, monkeypatch, tmp_path)
    assert plugin is not None and plugin.activation_checkpointing is True  # FSDP's, from the launch config
    assert getattr(config, checkpointing_field()) is False and config.gradient_checkpointing is False
    assert [plugin.activation_checkpointing, config.gradient_checkpointing].count(True) == 1
    assert {k for k in args if k.endswith("_checkpointing")} == {checkpointing_field()}  # one name, off
    assert "sft.gradient_checkpointing: off, because FSDP checkpoints the layers itself" in caplog.text


@pytest.mark.parametrize("recipe_sft", [{}, {"gradient_checkpointing": True}, {"gradient_checkpointing": False}])
def test_without_fsdp_checkpointing_the_trainer_keeps_its_own(
    recipe_sft: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # fsdp.yaml with FSDP's checkpointing turned off at launch: the trainer's is the one (our GPU default)
    env = _fsdp_env("fsdp.yaml", "--fsdp_activation_checkpointing", "false")
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "false"
    _, config, plugin = _resolved_under(env, recipe_sft, monkeypatch, tmp_path)
    assert plugin is not None and plugin.activation_checkpointing is False
    expected = recipe_sft.get("gradient_checkpointing", True)
    assert config.gradient_checkpointing is expected
    assert not (plugin.activation_checkpointing and config.gradient_checkpointing)  # never both


@pytest.mark.parametrize("name", ["zero3.yaml", "zero3_offload.yaml"])
def test_deepspeed_keeps_the_trainers_checkpointing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # ZeRO has no checkpointing of its own: Sky-T1 trained with gradient checkpointing (LLaMA-Factory's default)
    for key, value in _deepspeed_env(name).items():
        monkeypatch.setenv(key, value)
    sky = _recipe_sft("sky_t1.yaml")["sft"]
    merged = merge_sft_args(default_sft_args(on_gpu=True, fmt="messages", tiny=False), sky)
    assert merged["gradient_checkpointing"] is True
    assert one_activation_checkpointing(merged) == merged


def test_trainer_native_fsdp_config_counts_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("FSDP_ACTIVATION_CHECKPOINTING", raising=False)
    native = {"fsdp": "full_shard", "fsdp_config": {"activation_checkpointing": True}, "gradient_checkpointing": True}
    assert fsdp_checkpoints_layers(native)
    resolved = one_activation_checkpointing(native)
    assert {k: v for k, v in resolved.items() if k.endswith("_checkpointing")} == {checkpointing_field(): False}
    assert not fsdp_checkpoints_layers({"fsdp": "full_shard", "fsdp_config": '{"activation_checkpointing": false}'})
    assert not fsdp_checkpoints_layers({"fsdp_config": {"activation_checkpointing": True}})  # no FSDP, no FSDP AC
    # the environment alone means nothing without FSDP itself
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    assert not fsdp_checkpoints_layers({})
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert fsdp_checkpoints_layers({})
    assert not fsdp_checkpoints_layers({"fsdp_config": {"fsdp_activation_checkpointing": "false"}})


def test_fsdp_checkpointing_replaces_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    field = checkpointing_field()
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert default_sft_args(on_gpu=True, fmt="messages", tiny=False)[field] is True
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` exports for fsdp.yaml
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    assert default_sft_args(on_gpu=True, fmt="messages", tiny=False)[field] is False
