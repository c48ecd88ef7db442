"""Run the simulated teacher: in a background thread, on the caller's event loop, or as a process.

* ``with SimTeacher(wrong_rate=0.2) as sim:`` — a server thread with its own event loop, so sync
  tests and async clients (on any loop) can both use it; ``sim.base_url`` ends in ``/v1``.
* ``async with SimTeacher(...) as sim:`` — the server runs on the running loop (no thread).
* ``with SimProcess(...) as sim:`` — ``python -m tracesynth sim-teacher`` in a child process,
  for benchmarks that must not share a core (``stats()`` reads ``GET /stats``).
* :func:`serve` — the CLI's blocking entry point: prints the URL as its first stdout line and
  serves until SIGINT / SIGTERM.

Shutdown closes the listening socket, aborts every open connection (hung requests included),
waits for their handlers to finish cancelling, and closes the loop: nothing leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

from tracesynth.children import preexec_die_with_parent
from tracesynth.sim.http import Connection
from tracesynth.sim.options import SimOptions
from tracesynth.sim.server import SimApp

_KEY_ENV = "TRACESYNTH_SIM_API_KEY"


def _options(options: SimOptions | None, kwargs: dict[str, Any]) -> SimOptions:
    if options is None:
        return SimOptions(**kwargs)
    return SimOptions(**{**options.model_dump(), **kwargs}) if kwargs else options


class _Server:
    """The listening socket, its connections and their shutdown (runs on one event loop)."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.app = SimApp(options)
        self.conns: set[Connection] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self.app, self.conns), self.options.host, self.options.port, backlog=4096
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is None:
            return
        self.server.close()
        tasks = [c.task for c in self.conns if c.task is not None]
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.server.wait_closed()
        for _ in range(3):  # let connection_lost callbacks run
            await asyncio.sleep(0)
        self.server = None


class SimTeacher:
    """The simulated teacher on 127.0.0.1 (see module docstring). Keyword arguments are :class:`SimOptions`."""

    def __init__(self, options: SimOptions | None = None, **kwargs: Any) -> None:
        self.options = _options(options, kwargs)
        self._srv: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def port(self) -> int:
        if self._srv is None or not self._srv.port:
            raise RuntimeError("the simulated teacher is not running")
        return self._srv.port

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def app(self) -> SimApp:
        if self._srv is None:
            raise RuntimeError("the simulated teacher is not running")
        return self._srv.app

    def stats(self) -> dict[str, Any]:
        """Request, status, fault and token counters."""
        return self.app.stats.snapshot()

    # -- thread mode -----------------------------------------------------------------------
    def start(self) -> SimTeacher:
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._main, args=(ready, errors), name="sim-teacher", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            self._thread.join()
            self._thread = None
            raise errors[0]
        return self

    def _main(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            srv = _Server(self.options)
            loop.run_until_complete(srv.start())
            self._srv = srv
            self._stop = asyncio.Event()
        except BaseException as exc:
            errors.append(exc)
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_until_complete(self._stop.wait())
            loop.run_until_complete(srv.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> SimTeacher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- same-loop mode --------------------------------------------------------------------
    async def __aenter__(self) -> SimTeacher:
        srv = _Server(self.options)
        await srv.start()
        self._srv = srv
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._srv is not None:
            await self._srv.close()


async def _serve(options: SimOptions, announce: Callable[[str], None]) -> None:
    srv = _Server(options)
    await srv.start()
    # a process of its own: move everything built so far out of the collector's sight, so the
    # collections that per-request garbage triggers do not re-scan the imported libraries
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    announce(f"http://{options.host}:{srv.port}/v1")
    try:
        await stop.wait()
    finally:
        await srv.close()


def serve(options: SimOptions, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; ``announce`` gets the base URL once bound (default: print it)."""
    asyncio.run(_serve(options, announce or (lambda url: print(url, flush=True))))


def option_flags(options: SimOptions) -> list[str]:
    """CLI flags reproducing the non-default fields of ``options`` (the API key goes by environment)."""
    flags, defaults = [], SimOptions()
    for name in SimOptions.model_fields:
        value = getattr(options, name)
        if name == "api_key" or value == getattr(defaults, name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list):
            flags += [flag, ",".join(value)]
        else:
            flags += [flag, str(value)]
    return flags


class SimProcess:
    """``tracesynth sim-teacher`` in a child process (same keyword arguments as :class:`SimTeacher`)."""

    def __init__(self, options: SimOptions | None = None, **kwargs: Any) -> None:
        self.options = _options(options, kwargs)
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> SimProcess:
        env = dict(os.environ)
        cmd = [sys.executable, "-m", "tracesynth", "sim-teacher", *option_flags(self.options)]
        if self.options.api_key is not None:
            env[_KEY_ENV] = self.options.api_key.get_secret_value()
            cmd += ["--api-key-env", _KEY_ENV]
        # the server dies with whoever started it, kill -9 included (tracesynth.children)
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, text=True, env=env, preexec_fn=preexec_die_with_parent
        )
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("http"):
            self.stop()
            raise RuntimeError(f"sim-teacher did not start (first line: {line!r})")
        self.base_url = line
        return self

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/stats", timeout=10) as r:
            return json.load(r)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()
        self.proc = None

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
