"""Helpers of the chaos suite: run the CLI, write problems and recipes, read run files, wait for conditions.

The chaos tests drive tracesynth only through its stable surfaces: the CLI as a subprocess, recipe
YAML files, the public ``import tracesynth as ts`` API, and the files of a run folder. They talk to
127.0.0.1 only. The helpers (``run_cli``, ``write_recipe``, ``read_jsonl``, ``wait_for`` ...) reach tests as
attributes of the ``kit`` fixture, so no test module imports a conftest by name.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import yaml

T = TypeVar("T")
CHAOS_MARKER = "chaos: attack cases from the chaos issue (hostile teacher, kills, bad input)"


def pytest_configure(config: pytest.Config) -> None:
    # registered here so --strict-markers accepts the suite before pyproject lists the marker
    config.addinivalue_line("markers", CHAOS_MARKER)


# -- processes --------------------------------------------------------------------------------
def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "250",
            "NO_COLOR": "1",
        }
    )
    env.update(extra or {})
    return env


def run_cli(
    *args: str | Path,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m tracesynth ARGS`` to completion, output captured as text.

    On ``timeout`` the command's whole process group (its worker processes too) is killed and
    :class:`subprocess.TimeoutExpired` is raised."""
    cmd = [sys.executable, "-m", "tracesynth", *map(str, args)]
    with subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
        cwd=cwd,
        preexec_fn=preexec_fn,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def start_cli(*args: str | Path, log_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m tracesynth ARGS`` in the background; stdout/stderr go to files in ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out = (log_dir / "stdout.txt").open("wb")
    err = (log_dir / "stderr.txt").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tracesynth", *map(str, args)],
            stdout=out,
            stderr=err,
            env=cli_env(env),
            start_new_session=True,
        )
    finally:
        out.close()
        err.close()


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """Kill ``proc`` (and its process group) if it still runs, and reap it."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc/<pid>/task/*/children)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            for k in kids:
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


# -- files ------------------------------------------------------------------------------------
def arithmetic_rows(n: int, start: int = 0) -> list[dict[str, str]]:
    """``n`` distinct sums: {"id": "p<i>", "question": "What is a + b?", "answer": "a+b"}."""
    rows = []
    for i in range(start, start + n):
        a, b = 10 + i, 30 + 2 * i
        rows.append({"id": f"p{i}", "question": f"What is {a} + {b}?", "answer": str(a + b)})
    return rows


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One ``json.dumps`` line per row (models are written with ``model_dump_json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r.model_dump_json() if hasattr(r, "model_dump_json") else json.dumps(r)) + "\n")
    return path


def write_problems(path: Path, n: int = 10, *, start: int = 0, rows: list[dict[str, Any]] | None = None) -> Path:
    return write_jsonl(path, arithmetic_rows(n, start) if rows is None else rows)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def write_recipe(
    folder: Path, base_url: str, *, problems: Path | None = None, name: str = "recipe.yaml", **sections: Any
) -> Path:
    """A recipe for the hostile teacher in ``folder`` (run_dir ``folder/run``); ``sections`` are merged in.

    Defaults: jsonl source ``folder/problems.jsonl``, boxed_math, model ``hostile`` with prices $1 / $10
    per million tokens, max_tokens 1000, concurrency 4, fast backoff, verify [math], decontamination off.
    """
    recipe: dict[str, Any] = {
        "name": "chaos",
        "run_dir": str(folder / "run"),
        "source": {
            "kind": "jsonl",
            "path": str(problems or folder / "problems.jsonl"),
            "columns": {"question": "question", "answer": "answer"},
        },
        "prompt": {"template": "boxed_math"},
        "teacher": {
            "model": "hostile",
            "base_urls": [base_url],
            "api_key_env": None,
            "prices": {"input": 1.0, "output": 10.0},
            "sampling": {"max_tokens": 1000},
            "concurrency": 4,
            "timeout_s": 10,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "stop_grace_s": 2,
        },
        "verify": {"verifiers": ["math"]},
        "curate": {"decontam": {"enabled": False}},
    }
    path = folder / name
    path.write_text(yaml.safe_dump(deep_merge(recipe, sections), sort_keys=False))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSONL file as a dict ([] when the file does not exist)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n") and line.strip():
            rows.append(json.loads(line))
    return rows


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.endswith(b"\n"))
    except FileNotFoundError:
        return 0


def wait_for(cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``cond`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def error_lines(text: str) -> list[str]:
    """The ``error: ...`` lines of a command's stderr."""
    return [ln for ln in text.splitlines() if ln.startswith("error:")]


def tail(text: str, n: int = 3) -> str:
    """The last ``n`` non-empty lines of ``text``, joined with " | " (for one-line assertion messages)."""
    return " | ".join([ln.strip() for ln in text.splitlines() if ln.strip()][-n:])


def exception_of(text: str) -> str:
    """The exception line (and up to two detail lines) of the last traceback in ``text``."""
    lines = text.splitlines()
    start = max(i for i, ln in enumerate(lines) if ln.startswith("Traceback"))
    rest = [ln for ln in lines[start + 1 :] if ln.strip()]
    at = next((i for i, ln in enumerate(rest) if not ln[:1].isspace()), len(rest) - 1)
    return " | ".join(ln.strip() for ln in rest[at : at + 3])


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    if "Traceback" in proc.stderr:
        pytest.fail(f"traceback on stderr (exit {proc.returncode}): {exception_of(proc.stderr)}")


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *, code: int | None = None) -> str:
    """A failed command printed exactly one ``error:`` line and no traceback; returns that line."""
    assert_no_traceback(proc)
    if code is None:
        assert proc.returncode != 0, f"exit 0, no error; last line: {tail(proc.stderr or proc.stdout, 1)}"
    else:
        assert proc.returncode == code, (
            f"exit {proc.returncode}, want {code}; last line: {tail(proc.stderr or proc.stdout, 1)}"
        )
    errs = error_lines(proc.stderr)
    assert len(errs) == 1, f"want one 'error:' line, got {len(errs)}; stderr ends: {tail(proc.stderr)}"
    return errs[0]


def ledger(run_dir: Path) -> dict[str, Any]:
    data = read_json(run_dir / "harvest.json")
    assert data is not None, f"{run_dir}/harvest.json missing or invalid"
    return data["ledger"]


# -- the fixture ---------------------------------------------------------------------------------
HELPERS = (
    run_cli,
    start_cli,
    stop_process,
    pid_alive,
    children_of,
    arithmetic_rows,
    write_jsonl,
    write_problems,
    write_recipe,
    read_jsonl,
    read_json,
    count_lines,
    wait_for,
    error_lines,
    tail,
    exception_of,
    assert_no_traceback,
    assert_one_line_error,
    ledger,
)


@pytest.fixture
def kit() -> SimpleNamespace:
    """Every helper of this file as ``kit.<name>`` (test modules never import a conftest by name)."""
    return SimpleNamespace(**{f.__name__: f for f in HELPERS})
