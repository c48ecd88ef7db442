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


# -- what many test packages share (the kits in tests/support hold the plain functions) --------------------
@pytest.fixture
def sim_teacher():
    """Start simulated teachers with any options: ``sim = sim_teacher(wrong_rate=0.2)``; all stop after the test."""
    from tracesynth.sim import SimTeacher

    started: list[SimTeacher] = []

    def start(**options):
        sim = SimTeacher(**options).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def recipe_builder(tmp_path):
    """``recipe_builder(base_url, problems=20, **teacher)``: additions asked of that teacher, run folder tmp/run."""
    from harvest_kit import make_recipe

    return lambda base_url, problems=20, **teacher: make_recipe(tmp_path, base_url, problems, **teacher)


@pytest.fixture
def read_rows():
    """``read_rows(path)``: the records of a JSONL file (or of a run folder's samples.jsonl)."""
    from harvest_kit import rows

    return rows
