"""Start vLLM's OpenAI-compatible server on a checkpoint, wait for it, and stop it cleanly — whatever happens.

    with VllmServer("runs/demo/student", served_name="student") as server:
        server.base_url                     # http://127.0.0.1:PORT/v1 — a teacher, or the student under eval

Where vLLM comes from: ``command`` (``eval.vllm_command``), else ``$TRACESYNTH_VLLM_PYTHON``, else the
python of ``$TRACESYNTH_VLLM_VENV`` or of ``.venv-vllm`` next to the checkout or in the working folder
(``make vllm`` builds it), else this interpreter when it can import vllm. The server is
``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script of the CPU wheel cannot find
its own metadata) with the ``deepseek_r1`` reasoning parser on (reasoning arrives in ``message.reasoning``),
``--enforce-eager`` (start-up measured 2x faster on a CPU, and no faster decoding for small models with
compilation) and ``--dtype float32`` on a CPU unless asked otherwise (bfloat16, vLLM's CPU default, does
not give the same greedy tokens as the fp32 checkpoint). ``VLLM_CPU_KVCACHE_SPACE`` defaults to 1 GiB:
without it the CPU backend wants 92% of the machine's memory and refuses to start.

Lifetime: the server runs in its own session (so a Ctrl-C at the terminal reaches tracesynth first) and
gets SIGTERM when tracesynth dies, kill -9 included (a parent-death signal): vLLM then stops its engine
processes itself, which a SIGKILL would leave orphaned. :meth:`VllmServer.stop` sends SIGTERM, waits,
and kills the whole session if it has to. Output goes to a log file whose tail is quoted on failure.

This module starts processes and polls HTTP; it does not parse completions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tracesynth.errors import ConfigError, TeacherError

REASONING_PARSER = "deepseek_r1"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
BATCH_MODULE = "vllm.entrypoints.openai.run_batch"
_CHECKOUT = Path(__file__).resolve().parents[2]


def vllm_python() -> str | None:
    """The python of the vLLM environment (see the module docstring), or None when there is none."""
    explicit = os.environ.get("TRACESYNTH_VLLM_PYTHON")
    if explicit:
        return explicit
    venvs = [os.environ.get("TRACESYNTH_VLLM_VENV"), str(_CHECKOUT / ".venv-vllm"), str(Path.cwd() / ".venv-vllm")]
    for v in venvs:
        if v and (Path(v) / "bin" / "python").exists():
            return str(Path(v) / "bin" / "python")
    try:
        import importlib.util

        if importlib.util.find_spec("vllm") is not None:
            return sys.executable
    except (ImportError, ValueError):
        pass
    return None


def base_command(module: str = SERVER_MODULE, command: list[str] | None = None) -> list[str]:
    """``[python, -m, module]`` of the vLLM environment, or ``command`` as given."""
    if command:
        return list(command)
    py = vllm_python()
    if py is None:
        raise ConfigError(
            "eval.backend: vllm: no vLLM environment found; run `make vllm` (it builds .venv-vllm), "
            "or set TRACESYNTH_VLLM_VENV / eval.vllm_command"
        )
    return [py, "-m", module]


def check_vllm(cfg: Any) -> list[str]:
    """What ``eval.backend: vllm`` needs before it starts (ConfigError when vLLM cannot be found)."""
    base_command(command=getattr(cfg, "vllm_command", None))
    return []


def server_args(
    checkpoint: str,
    served_name: str,
    port: int,
    *,
    dtype: str = "auto",
    reasoning_parser: str | None = REASONING_PARSER,
    extra_args: list[str] | None = None,
) -> list[str]:
    args = [
        "--model",
        str(checkpoint),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--dtype",
        _dtype(dtype),
    ]
    if reasoning_parser:
        args += ["--reasoning-parser", reasoning_parser]
    return args + list(extra_args or [])


def _dtype(dtype: str) -> str:
    if dtype != "auto":
        return dtype
    return "auto" if _has_cuda() else "float32"


def _has_cuda() -> bool:
    return Path("/dev/nvidia0").exists() or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the CPU backend refuses to start without a size
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    env.pop("PYTHONPATH", None)  # the project's packages must not shadow the vLLM environment's own
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _term_with_parent() -> None:  # runs in the child before exec: SIGTERM lets vLLM stop its own engine processes
    from tracesynth.children import die_with_parent

    die_with_parent(signal.SIGTERM)


class VllmServer:
    """One vLLM OpenAI server on one checkpoint (see the module docstring)."""

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        served_name: str = "model",
        port: int | None = None,
        command: list[str] | None = None,
        extra_args: list[str] | None = None,
        dtype: str = "auto",
        reasoning_parser: str | None = REASONING_PARSER,
        start_timeout_s: float = 600.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.checkpoint = str(checkpoint)
        if not Path(self.checkpoint).is_dir():
            raise ConfigError(f"{self.checkpoint}: no checkpoint folder to serve")
        self.served_name = served_name
        self.port = port or _free_port()
        self.cmd = base_command(command=command) + server_args(
            self.checkpoint,
            served_name,
            self.port,
            dtype=dtype,
            reasoning_parser=reasoning_parser,
            extra_args=extra_args,
        )
        self.start_timeout_s = start_timeout_s
        self.log_path = Path(log_path) if log_path else Path(self.checkpoint) / "vllm-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VllmServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=engine_env(),
            start_new_session=True,
            preexec_fn=_term_with_parent,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Poll ``/health`` until it answers 200; fail naming the log when the server exits or takes too long."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        delay = 0.25
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise TeacherError(
                    f"vLLM exited ({code}) while starting on {self.checkpoint}: "
                    f"{self.log_tail()} (log: {self.log_path})"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError, TimeoutError):
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        raise TeacherError(
            f"vLLM did not answer /health within {self.start_timeout_s:g}s on {self.checkpoint} "
            f"(log: {self.log_path}): {self.log_tail()}"
        )

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        wanted = [ln for ln in text if "Error" in ln or "error" in ln] or text
        return " | ".join(ln.strip()[:300] for ln in wanted[-lines:])

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM the server (it stops its engine processes), then SIGKILL its whole session if needed."""
        proc = self.proc
        if proc is None:
            return None
        code = proc.poll()
        if code is None:
            try:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                code = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # engine processes left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        if code is None:
            code = proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None
        return code

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_batch_command(
    checkpoint: str,
    input_path: str,
    output_path: str,
    *,
    served_name: str,
    dtype: str = "auto",
    extra_args: list[str] | None = None,
) -> list[str]:
    """The ``run_batch`` command for a batch file exported by ``harvest --export-batch``."""
    return [
        *base_command(BATCH_MODULE),
        "-i",
        str(input_path),
        "-o",
        str(output_path),
        "--model",
        str(checkpoint),
        "--served-model-name",
        served_name,
        "--enforce-eager",
        "--dtype",
        _dtype(dtype),
        "--reasoning-parser",
        REASONING_PARSER,
        *(extra_args or []),
    ]


__all__ = [
    "BATCH_MODULE",
    "REASONING_PARSER",
    "SERVER_MODULE",
    "VllmServer",
    "base_command",
    "check_vllm",
    "engine_env",
    "run_batch_command",
    "server_args",
    "vllm_python",
]
