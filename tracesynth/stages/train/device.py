"""Where training and generation run: CPU threads for small models, and which process is the main one.

This module decides thread counts and ranks; it trains nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

SMALL_MODEL_PARAMS = 50_000_000


@contextlib.contextmanager
def cpu_threads(model: Any, threads: int | None = None) -> Iterator[int]:
    """Run a block with ``threads`` intra-op threads (``compute.cpu_threads``; None: decide here).

    A small model's matmuls are tiny, and OpenMP threads that spin-wait for a descheduled partner
    collapse when the cores are already busy: on the 2-core box with other jobs running (load
    average > cores - 0.5) two threads trained the tiny student at 3.6-9.6k tokens/s and one at
    12.7-15.5k, and decoding was 4x slower per token; on the idle box two threads were 1.5x faster
    (bench/sft.py). So None means one thread for a small model (< 50M parameters) on a busy CPU,
    else torch's default. Set ``compute.cpu_threads`` to pin it (e.g. for bit-reproducible runs).
    """
    import torch

    before = torch.get_num_threads()
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS
    if threads is None and on_cpu and small and os.getloadavg()[0] > (os.cpu_count() or 1) - 0.5:
        threads = 1
    if threads is not None and on_cpu:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


__all__ = ["SMALL_MODEL_PARAMS", "cpu_threads", "main_process"]
