"""The arguments TRL's SFTConfig gets: our defaults under the recipe's ``sft:`` block, checked against TRL itself.

* :func:`check_sft_keys` — a key of the recipe's ``sft:`` block that ``trl.SFTConfig`` does not have is an
  error naming it (and the closest real field);
* :func:`default_sft_args` — our defaults, applied *under* the recipe (defaults < recipe < ``--set``):
  loss on the assistant turn only (``assistant_only_loss`` for ``messages`` data, ``completion_only_loss``
  for prompt/completion data), ``report_to: none``, non-padding token counting; on the CPU fp32 and no
  activation checkpointing, packing or padding-free (each is slower there); on a GPU bf16 and activation
  checkpointing, unless FSDP checkpoints the layers itself; the tiny student gets :data:`TINY_SFT_DEFAULTS`;
* :func:`one_activation_checkpointing` — exactly one activation checkpointing in the resolved arguments:
  when FSDP checkpoints the layers (``fsdp_activation_checkpointing`` in the accelerate config, or
  ``fsdp_config.activation_checkpointing``), the trainer's own is dropped, whatever the recipe says;
* :func:`trl_default` — TRL's own default of a field, read from TRL (never copied here).

This module builds argument dicts; it trains nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracesynth.errors import ConfigError

log = logging.getLogger(__name__)

# Defaults for a from-scratch tiny student (a pretrained 7B wants TRL's 2e-5; a 0.15M-parameter
# random init needs a far larger step). Swept on addition traces: 5e-3 learns 2-digit addition in
# ~800 steps; 2e-3 had not left the plateau after 500, 1e-2 diverged to a worse plateau.
TINY_SFT_DEFAULTS: dict[str, Any] = {
    "learning_rate": 5e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "adam_beta2": 0.95,
    "weight_decay": 0.0,
    "per_device_train_batch_size": 16,
    "num_train_epochs": 3,
    "max_length": 1024,
}


def sft_field_names() -> set[str]:
    """Every field ``trl.SFTConfig`` accepts."""
    import dataclasses

    from trl import SFTConfig

    return {f.name for f in dataclasses.fields(SFTConfig) if f.init}


def check_sft_keys(sft_dict: dict[str, Any]) -> None:
    """Raise ConfigError naming the first key of the recipe's ``sft:`` block that SFTConfig lacks."""
    if not sft_dict:
        return
    known = sft_field_names()
    unknown = sorted(k for k in sft_dict if k not in known)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"sft.{unknown[0]}: unknown key: not a trl.SFTConfig field{hint}")
    coerce_numbers(sft_dict)  # a value that should be a number and is not: named here, not deep in TRL


def checkpointing_field() -> str:
    """The name of the trainer's activation-checkpointing switch in the installed transformers.

    transformers 5.23 renamed ``gradient_checkpointing`` to ``activation_checkpointing`` (the old name
    still works there and warns); older 5.x releases only have the old name.
    """
    return "activation_checkpointing" if "activation_checkpointing" in sft_field_names() else "gradient_checkpointing"


def default_sft_args(*, on_gpu: bool, fmt: str, tiny: bool) -> dict[str, Any]:
    """Our defaults for SFTConfig before the recipe's keys are applied (see module docstring)."""
    args: dict[str, Any] = {
        "report_to": "none",
        "logging_steps": 10,
        "save_total_limit": 2,
        "include_num_input_tokens_seen": "non_padding",
        "packing": False,
        "padding_free": False,
    }
    if fmt == "messages":
        args["assistant_only_loss"] = True
    else:
        args["completion_only_loss"] = True
    checkpointing = checkpointing_field()
    if on_gpu:
        # under `accelerate launch` with fsdp_activation_checkpointing, FSDP checkpoints the layers itself
        args.update(bf16=True, **{checkpointing: not fsdp_checkpoints_layers({})})
    else:
        args.update(bf16=False, fp16=False, dataloader_pin_memory=False, **{checkpointing: False})
    if tiny:
        args.update(TINY_SFT_DEFAULTS)
    return args


def _on(value: Any) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes", "on"}


def _fsdp_config(value: Any) -> dict[str, Any]:
    """``fsdp_config`` as transformers reads it: a dict, a JSON string, or the path of a JSON file."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value.strip():
        try:
            data = json.loads(value if value.lstrip().startswith("{") else Path(value).read_text())
        except (OSError, ValueError):
            return {}  # transformers names the bad file itself when it builds SFTConfig
        return data if isinstance(data, dict) else {}
    return {}


def fsdp_checkpoints_layers(args: Mapping[str, Any], env: Mapping[str, str] | None = None) -> bool:
    """Whether FSDP will run its own activation checkpointing for these SFTConfig arguments.

    FSDP is on under ``accelerate launch`` with an FSDP config (it exports ``ACCELERATE_USE_FSDP=true``)
    or with the Trainer's own ``fsdp`` field. Its checkpointing is ``fsdp_config.activation_checkpointing``
    when the ``sft:`` block sets it (the Trainer hands that to accelerate's FSDP plugin), else
    ``FSDP_ACTIVATION_CHECKPOINTING`` (what ``accelerate launch`` exports from ``fsdp_activation_checkpointing``,
    and what the plugin reads when nothing else sets it).
    """
    env = os.environ if env is None else env
    if not (_on(env.get("ACCELERATE_USE_FSDP", "false")) or args.get("fsdp")):
        return False
    config = _fsdp_config(args.get("fsdp_config"))
    for key in ("activation_checkpointing", "fsdp_activation_checkpointing"):
        if key in config:
            return _on(config[key])
    return _on(env.get("FSDP_ACTIVATION_CHECKPOINTING", "false"))


def one_activation_checkpointing(args: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The arguments with exactly one activation checkpointing: FSDP's when FSDP checkpoints the layers.

    Checkpointing twice recomputes every layer twice, and transformers refuses the pair ("can't both be
    set to True. Use FSDP's activation checkpointing when using FSDP", Trainer.create_accelerator_and_postprocess).
    FSDP's is the one kept, as transformers recommends: the trainer's "introduces a redundant AllGather in
    the backward pass" (TrainingArguments.fsdp_config docs; huggingface/transformers#30404). A recipe that
    asks for ``gradient_checkpointing``/``activation_checkpointing`` under such a config gets a warning.
    Without FSDP checkpointing the arguments are returned unchanged.
    """
    if not fsdp_checkpoints_layers(args, env):
        return args
    out = dict(args)
    asked = [k for k in ("activation_checkpointing", "gradient_checkpointing") if out.get(k)]
    for key in ("gradient_checkpointing", "gradient_checkpointing_kwargs"):  # old names: never beside the new
        out.pop(key, None)
    out[checkpointing_field()] = False
    if asked:
        log.warning(
            "sft.%s: off, because FSDP checkpoints the layers itself (fsdp_activation_checkpointing); "
            "checkpointing twice would recompute every layer twice and transformers refuses it",
            asked[0],
        )
    return out


def coerce_numbers(args: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads ``1e-5`` (no dot) as a string: turn such strings into the number SFTConfig expects."""
    import dataclasses
    import typing

    from trl import SFTConfig

    kinds = {f.name: f.type for f in dataclasses.fields(SFTConfig)}
    out = dict(args)
    for key, value in args.items():
        if not isinstance(value, str) or key not in kinds:
            continue
        kind = kinds[key]
        members = typing.get_args(kind) or (kind,)
        names = {getattr(m, "__name__", str(m)) for m in members}
        if "str" in names or not names & {"float", "int"}:
            continue
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"sft.{key}: expected a number, got {value!r}") from None
        out[key] = int(number) if "float" not in names and number.is_integer() else number
    return out


def merge_sft_args(defaults: dict[str, Any], recipe_sft: dict[str, Any]) -> dict[str, Any]:
    """Defaults < recipe; a recipe's ``gradient_checkpointing`` (old name) replaces our ``activation_checkpointing``
    and the reverse (one name per switch, whichever the installed transformers has for our default)."""
    args = dict(defaults)
    for old, new in CHECKPOINTING_NAMES:
        if old in recipe_sft and new not in recipe_sft:
            args.pop(new, None)
        elif new in recipe_sft and old not in recipe_sft:
            args.pop(old, None)
    args.update(coerce_numbers(recipe_sft) if recipe_sft else {})
    for key, value in args.items():  # YAML 1.1 reads `save_strategy: no` as False
        if key.endswith("_strategy") and value is False:
            args[key] = "no"
    return args


CHECKPOINTING_NAMES = (
    ("gradient_checkpointing", "activation_checkpointing"),
    ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
)


def installed_names(args: dict[str, Any]) -> dict[str, Any]:
    """The arguments with the checkpointing switch under the installed transformers' name: s1's and Sky-T1's
    ``gradient_checkpointing`` is deprecated from transformers 5.23 (``activation_checkpointing``), and the new
    name does not exist before it."""
    new_names = checkpointing_field() == "activation_checkpointing"
    out = dict(args)
    for old, new in CHECKPOINTING_NAMES:
        src, dst = (old, new) if new_names else (new, old)
        if src in out:
            value = out.pop(src)
            out.setdefault(dst, value)
    return out


@functools.cache
def trl_default(name: str) -> Any:
    """``trl.SFTConfig``'s default for field ``name`` (None when TRL is not installed or has no such field)."""
    import dataclasses

    try:
        from trl import SFTConfig
    except ImportError:
        return None
    for f in dataclasses.fields(SFTConfig):
        if f.name == name:
            return None if f.default is dataclasses.MISSING else f.default
    return None


__all__ = [
    "TINY_SFT_DEFAULTS",
    "check_sft_keys",
    "checkpointing_field",
    "coerce_numbers",
    "default_sft_args",
    "fsdp_checkpoints_layers",
    "merge_sft_args",
    "one_activation_checkpointing",
    "sft_field_names",
    "trl_default",
]
