"""``python -m tracesynth ARGS`` with accelerate's one CPU gate on FSDP lifted (a script, not a test).

test_distributed.py runs this under ``accelerate launch`` (2 processes, ``ACCELERATE_USE_CPU=1``, gloo).
accelerate (1.16) assigns ``DistributedType.FSDP`` only when the job runs on a GPU-like device
(``AcceleratorState.__init__``: MULTI_GPU, MULTI_XPU, MULTI_NPU, ...); a CPU job becomes MULTI_CPU,
plain DDP, and the FSDP plugin built from the launch config is dropped without a word. This script
changes exactly that decision — MULTI_CPU with an FSDP plugin becomes FSDP — and nothing else:
accelerate's FSDP2 preparation (torch ``fully_shard`` on a gloo CPU mesh, its activation checkpointing,
the full-state-dict gather at save time), transformers' Trainer, TRL and tracesynth's CLI run as shipped.

With ``TRACESYNTH_PROBE_DIR`` set, every rank writes ``rank<N>.json`` after its first optimizer step:
what its model and optimizer actually held (DTensor shards or whole tensors, local and global element
counts), so the test can tell real sharding from replication.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any


def _lift_cpu_gate() -> None:
    from accelerate import state
    from accelerate.utils import DistributedType

    original = state.AcceleratorState.__init__

    def init(self, *args: Any, fsdp_plugin: Any = None, **kwargs: Any) -> None:
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    state.AcceleratorState.__init__ = init


def _local_numel(t: Any) -> int:
    from torch.distributed.tensor import DTensor

    return int(t.to_local().numel()) if isinstance(t, DTensor) else int(t.numel())


def _trainer_checkpointing(model: Any) -> bool:
    """Whether the trainer turned on the model's own checkpointing (the name changed in transformers 5.23)."""
    name = (
        "is_activation_checkpointing"
        if hasattr(type(model), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    return bool(getattr(model, name, False))


def _probe(out_dir: Path) -> None:
    import torch.distributed as dist
    import transformers

    class Probe(transformers.TrainerCallback):
        done = False

        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            if self.done or model is None:
                return
            self.done = True
            from accelerate.state import AcceleratorState

            params = list(model.parameters())
            inner = getattr(optimizer, "optimizer", optimizer)
            moments = [v for st in inner.state.values() for k, v in st.items() if k in ("exp_avg", "exp_avg_sq")]
            plugin = AcceleratorState().fsdp_plugin
            info = {
                "rank": dist.get_rank(),
                "world_size": dist.get_world_size(),
                "backend": dist.get_backend(),
                "distributed_type": str(AcceleratorState().distributed_type).rsplit(".", 1)[-1],
                "fsdp_version": getattr(plugin, "fsdp_version", None),
                "fsdp_activation_checkpointing": bool(getattr(plugin, "activation_checkpointing", False)),
                "param_classes": sorted({type(p).__name__ for p in params}),
                "model_class": type(model).__name__,
                "params_local": sum(_local_numel(p) for p in params),
                "params_global": sum(int(p.numel()) for p in params),
                "optimizer_state_local": sum(_local_numel(v) for v in moments),
                "optimizer_state_global": sum(int(v.numel()) for v in moments),
                # fully_shard renames each class it shards (CheckpointWrapper -> FSDPCheckpointWrapper)
                "checkpoint_wrapped": sum(type(m).__name__.endswith("CheckpointWrapper") for m in model.modules()),
                "trainer_checkpointing": _trainer_checkpointing(model),
            }
            (out_dir / f"rank{info['rank']}.json").write_text(json.dumps(info, indent=2))

    original = transformers.Trainer.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.add_callback(Probe())

    transformers.Trainer.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    _lift_cpu_gate()
    if os.environ.get("TRACESYNTH_PROBE_DIR"):
        _probe(Path(os.environ["TRACESYNTH_PROBE_DIR"]))
    sys.argv = ["tracesynth", *sys.argv[1:]]
    runpy.run_module("tracesynth", run_name="__main__", alter_sys=True)
