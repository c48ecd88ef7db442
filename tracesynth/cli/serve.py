"""``tracesynth serve MODEL_DIR``: vLLM's OpenAI server on a checkpoint, until Ctrl-C (tracesynth.engine.vllm)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer


def serve_cmd(
    model_dir: Annotated[Path, typer.Argument(help="A checkpoint folder (a trained student, or any HF model).")],
    name: Annotated[str, typer.Option("--name", help="The model name the server answers to.")] = "student",
    port: Annotated[Optional[int], typer.Option("--port", help="Port on 127.0.0.1 (default: a free one).")] = None,  # noqa: UP045
    dtype: Annotated[str, typer.Option("--dtype", help="auto (float32 on a CPU), float32, bfloat16.")] = "auto",
    reasoning_parser: Annotated[
        str, typer.Option("--reasoning-parser", help="vLLM reasoning parser ('' to turn it off).")
    ] = "deepseek_r1",
    vllm_arg: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--vllm-arg", help="An extra argument for vLLM's server (repeatable), e.g. --vllm-arg=--max-model-len=4096"
        ),
    ] = None,
) -> None:
    """Serve a checkpoint with vLLM (reasoning parser on); print its base URL; stop cleanly on Ctrl-C / SIGTERM."""
    from tracesynth.engine.vllm import VllmServer

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = VllmServer(
        model_dir,
        served_name=name,
        port=port,
        dtype=dtype,
        reasoning_parser=reasoning_parser or None,
        extra_args=list(vllm_arg or []),
        log_path=Path(model_dir) / "vllm-serve.log",
    )
    typer.echo(f"starting vLLM on {model_dir} (log: {server.log_path}) ...", err=True)
    with server:
        typer.echo(server.base_url, err=False)  # the first line on stdout: what a script reads
        typer.echo(f"serving {name!r} at {server.base_url} — Ctrl-C to stop", err=True)
        while not stop.wait(1.0):
            if server.proc is None or server.proc.poll() is not None:
                raise typer.Exit(1)
        typer.echo("stopping vLLM ...", err=True)
    typer.echo("stopped", err=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
