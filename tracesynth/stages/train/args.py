"""The arguments TRL's SFTConfig gets: our defaults under the recipe's ``sft:`` block, checked against TRL itself.

* :func:`check_sft_keys` — a key of the recipe's ``sft:`` block that ``trl.SFTConfig`` does not have is an
  error naming it (and the closest real field);
* :func:`default_sft_args` — our defaults, applied *under* the recipe (defaults < recipe < ``--set``):
  loss on the assistant turn only (``assistant_only_loss`` for ``messages`` data, ``completion_only_loss``
  for prompt/completion data), ``report_to: none``, non-padding token counting; on the CPU fp32 and no
  activation checkpointing, packing or padding-free (each is slower there); on a GPU bf16 and activation
  checkpointing, unless FSDP checkpoints the layers itself (exactly one of the two); the tiny student
  gets :data:`TINY_SFT_DEFAULTS`;
* :func:`trl_default` — TRL's own default of a field, read from TRL (never copied here).

This module builds argument dicts; it trains nothing.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from tracesynth.errors import ConfigError

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
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name warns)
    if on_gpu:
        # under `accelerate launch` with fsdp_activation_checkpointing, FSDP checkpoints the layers itself
        fsdp_ac = os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true"
        args.update(bf16=True, activation_checkpointing=not fsdp_ac)
    else:
        args.update(bf16=False, fp16=False, activation_checkpointing=False, dataloader_pin_memory=False)
    if tiny:
        args.update(TINY_SFT_DEFAULTS)
    return args


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
    """Defaults < recipe; a recipe's ``gradient_checkpointing`` (old name) replaces our ``activation_checkpointing``."""
    args = dict(defaults)
    for old, new in (
        ("gradient_checkpointing", "activation_checkpointing"),
        ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
    ):
        if old in recipe_sft and new not in recipe_sft:
            args.pop(new, None)
    args.update(coerce_numbers(recipe_sft) if recipe_sft else {})
    for key, value in args.items():  # YAML 1.1 reads `save_strategy: no` as False
        if key.endswith("_strategy") and value is False:
            args[key] = "no"
    return args


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
    "coerce_numbers",
    "default_sft_args",
    "merge_sft_args",
    "sft_field_names",
    "trl_default",
]
