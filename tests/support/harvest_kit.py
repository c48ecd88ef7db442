"""What the harvest tests share: arithmetic problems the simulator solves, a recipe around them, JSONL rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe

PRICES = {"input": 1.0, "output": 2.0}


def write_problems(path: Path, n: int) -> Path:
    """``n`` additions ``p0000``.. with their answers (the simulator solves them column by column)."""
    with path.open("w") as fh:
        for i in range(n):
            a, b = 10 + i, 7 * i + 3
            fh.write(json.dumps({"id": f"p{i:04d}", "problem": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n")
    return path


def recipe_dict(tmp: Path, base_url: str | None, problems: int = 20, **teacher: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "model": "sim-reasoner",
        "concurrency": 8,
        "n": 1,
        "sampling": {"max_tokens": 600},
        "prices": PRICES,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "timeout_s": 10,
        "api_key_env": None,
    }
    if base_url:
        t["base_urls"] = [base_url]
    t.update(teacher)
    return {
        "name": "t",
        "run_dir": str(tmp / "run"),
        "teacher": t,
        "source": {"kind": "jsonl", "path": str(write_problems(tmp / "p.jsonl", problems))},
    }


def make_recipe(tmp: Path, base_url: str | None, problems: int = 20, **teacher: Any) -> Recipe:
    """A recipe asking ``problems`` additions of the teacher at ``base_url``, run folder ``tmp/run``."""
    return Recipe.model_validate(recipe_dict(tmp, base_url, problems, **teacher))


def rows(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file ([] when it does not exist): the one reader the tests use."""
    if path.is_dir():
        path = path / "samples.jsonl"
    if not path.exists():
        return []
    return [json.loads(raw) for raw in path.read_text().splitlines() if raw.strip()]
