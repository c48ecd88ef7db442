"""Shared pytest fixtures. Tests talk to 127.0.0.1 only and never download anything."""

from __future__ import annotations

import os
import tempfile

import pytest

# Nothing may reach a hub at test time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Caches (decontamination indexes) go to a fresh folder, never the developer's ~/.cache.
os.environ.setdefault("TRACESYNTH_CACHE", tempfile.mkdtemp(prefix="tracesynth-test-cache-"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
