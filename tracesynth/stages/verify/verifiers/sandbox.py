"""Run an untrusted program (teacher-written code) in a contained subprocess, once per call.

Every call starts a fresh process with its own limits, working directory, environment and,
where the OS allows, its own user id and namespaces; after it ends (or is killed) everything it
started is killed too. :func:`capabilities` says which isolation this machine actually gives:
it is probed once per process by running a tiny program under the strongest setup first and
falling back step by step, and every :class:`RunResult` names the features that were in force.

Protects against (in the strongest mode, ``uid+mount+net+ipc+hidepid``: Linux, run as root,
which is how CI runs; each item has a test in tests/test_verify_sandbox.py):

* endless loops: ``RLIMIT_CPU`` (SIGXCPU, then SIGKILL one second later) and a wall-clock
  timeout after which the whole process tree is killed;
* memory bombs: ``RLIMIT_AS`` (address space);
* fork bombs: ``RLIMIT_NPROC`` for a user id that no other process on the machine uses (a fresh
  one per run; as root the limit would be ignored, and for a shared user id it counts all of
  that user's processes, so a fresh uid is what makes the limit mean "processes of this run");
* huge output and disk filling: ``RLIMIT_FSIZE`` on stdout/stderr (written to files, the
  parent reads at most ``output_bytes``) and on every file; the working directory and ``/tmp``
  are a size-limited tmpfs private to the run;
* writing outside its directory: the program runs as an unprivileged, fresh uid that owns
  nothing, and ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run``, ``/root`` and ``/home`` are
  replaced by empty private tmpfs mounts (the Python installation, if it lives under one of
  them, is bind-mounted back read-only); ``no_new_privs`` stops set-uid programs (sudo, su);
* secrets in the environment: the program gets a minimal environment (PATH, HOME, TMPDIR,
  LANG), never the parent's; the parent's ``/proc/<pid>/environ`` is unreadable to its uid and
  other users' processes are invisible in its ``/proc`` (hidepid=2);
* the network: a new, empty network namespace (only a loopback that is down), so no TCP/UDP to
  the host, the LAN or the internet, and no abstract unix sockets of the host;
* killing or tracing the parent or other processes: a different uid may not signal or ptrace
  them;
* processes left behind: the program gets its own session; afterwards every process of the
  run's uid is killed with one ``kill(-1, SIGKILL)`` issued as that uid (double-forked daemons
  included).

Does NOT protect against:

* kernel exploits, CPU side channels, or anything needing a real VM/gVisor boundary; this is
  process isolation for mistakes and ordinary misbehaviour, not a jail for hostile experts;
* reading world-readable files (the program can read e.g. /etc and the project's source tree;
  put secrets in files only their owner can read) and world-writable unix sockets outside the
  hidden directories;
* CPU starvation of other processes while it runs (no cgroup: a run may use up to ``nproc``
  processes busy-looping until the wall timeout);
* memory that is not address space (e.g. page cache) and kernel memory;
* in weaker modes, what the missing feature would have given: without ``uid`` the program runs
  as the caller (it could signal the caller, read the caller's files and write where the caller
  can; as root that means anywhere), ``RLIMIT_NPROC`` is ignored for root and counts all the
  user's processes otherwise, and a process that calls ``setsid`` can escape the cleanup;
  without ``net`` it can use the network; without ``mount`` it shares ``/tmp``.

This module runs programs and reports what happened (the Linux mechanics are in confine.py);
it does not decide whether an output is correct (the code verifier does).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tracesynth.stages.verify.verifiers import confine

RunStatus = Literal["ok", "error", "timeout", "memory", "output_limit", "sandbox_error"]

_caps_lock = threading.Lock()
_caps: Capabilities | None = None


@dataclass(frozen=True)
class Limits:
    """Per-run limits. ``output_bytes`` caps stdout, stderr and every file the program writes."""

    cpu_s: float = 5.0
    wall_s: float = 10.0
    memory_mb: int = 1024
    nproc: int = 32
    output_bytes: int = 1_000_000
    nofile: int = 64
    tmpfs_mb: int = 64


@dataclass
class RunResult:
    status: RunStatus
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    reason: str = ""
    features: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Capabilities:
    """What isolation this process can give (probed once; see the module docstring)."""

    features: frozenset[str]
    notes: tuple[str, ...] = ()
    python: str = sys.executable

    def describe(self) -> str:
        feats = "+".join(sorted(self.features)) or "none"
        return f"{feats}" + (f" ({'; '.join(self.notes)})" if self.notes else "")


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until the program exits (True) or ``timeout`` passes (False), without polling."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # kernels before 5.3: Popen's own (polling) wait
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))
    finally:
        os.close(fd)


def _read_capped(fh, cap: int) -> tuple[str, bool]:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    data = fh.read(cap)
    return data.decode("utf-8", errors="replace"), size >= cap


def _classify(rc: int, stderr: str, truncated: bool, lim: Limits) -> tuple[RunStatus, str]:
    if truncated or rc in (-signal.SIGXFSZ,) or "File too large" in stderr[-500:]:
        return "output_limit", f"output limit ({lim.output_bytes} bytes) exceeded"
    if rc == -signal.SIGXCPU:
        return "timeout", f"CPU time limit ({lim.cpu_s:g}s) exceeded"
    if rc == -signal.SIGKILL:
        return "timeout", f"killed (SIGKILL): CPU hard limit ({lim.cpu_s:g}s + 1s) or out of memory"
    tail = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = tail[-1].strip()[:300] if tail else ""
    if "MemoryError" in last or last == "MemoryError":
        return "memory", f"memory limit ({lim.memory_mb} MB address space) exceeded"
    if rc < 0:
        return "error", f"killed by signal {signal.Signals(-rc).name}" + (f": {last}" if last else "")
    return "error", f"exit code {rc}" + (f": {last}" if last else "")


def run(
    argv: list[str],
    *,
    stdin: str | bytes = b"",
    files: dict[str, str | bytes] | None = None,
    limits: Limits | None = None,
) -> RunResult:
    """Run ``argv`` in the sandbox with ``files`` in its (fresh, empty) working directory.

    Never raises for anything the program does; a failure to start it is ``sandbox_error``.
    """
    lim = limits or Limits()
    caps = capabilities()
    return _run(argv, stdin, files or {}, lim, caps.features)


def run_python(
    source: str, *, stdin: str | bytes = b"", limits: Limits | None = None, files: dict[str, str | bytes] | None = None
) -> RunResult:
    """Run Python ``source`` as ``main.py`` with this interpreter in isolated mode (``-I``)."""
    all_files = {**(files or {}), "main.py": source}
    return run([capabilities().python, "-I", "main.py"], stdin=stdin, files=all_files, limits=limits)


def _run(
    argv: list[str], stdin: str | bytes, files: dict[str, str | bytes], lim: Limits, features: frozenset[str]
) -> RunResult:
    t0 = time.monotonic()
    uid = confine.new_uid() if "uid" in features else None
    hide, expose = confine.plan_mounts(features)
    data = {n: (c.encode() if isinstance(c, str) else c) for n, c in files.items()}
    host_dir = None
    try:
        if "mount" in features:
            workdir = confine.WORKDIR_IN_NS
        else:
            host_dir = tempfile.mkdtemp(prefix="tracesynth-sbx-")
            workdir = host_dir
            for name, content in data.items():
                Path(host_dir, name).write_bytes(content)
                if uid is not None:
                    os.chown(Path(host_dir, name), uid, uid)
            if uid is not None:
                os.chown(host_dir, uid, uid)
            os.chmod(host_dir, 0o700)
        plan = confine.Plan(features, uid, lim, workdir, data if "mount" in features else {}, expose, hide)
        env = {
            "PATH": confine.ENV_PATH,
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
            fin.write(stdin.encode() if isinstance(stdin, str) else stdin)
            fin.seek(0)
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=fin,
                    stdout=fout,
                    stderr=ferr,
                    cwd=host_dir or "/",
                    env=env,
                    start_new_session=True,
                    preexec_fn=confine.child_setup(plan),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                return RunResult(
                    "sandbox_error",
                    None,
                    "",
                    "",
                    time.monotonic() - t0,
                    f"could not start the program: {type(exc).__name__}: {exc}",
                    tuple(sorted(features)),
                )
            timed_out = not _wait_exit(proc, lim.wall_s)
            confine.kill_all(proc, uid)
            rc = proc.wait()
            out, out_trunc = _read_capped(fout, lim.output_bytes)
            err, err_trunc = _read_capped(ferr, lim.output_bytes)
        wall = time.monotonic() - t0
        status: Any
        if timed_out:
            status, reason = "timeout", f"wall time limit ({lim.wall_s:g}s) exceeded"
        elif rc == 0 and not (out_trunc or err_trunc):
            status, reason = "ok", ""
        else:
            status, reason = _classify(rc, err, out_trunc or err_trunc, lim)
        return RunResult(status, rc, out, err, wall, reason, tuple(sorted(features)))
    finally:
        if host_dir is not None:
            shutil.rmtree(host_dir, ignore_errors=True)


# -- capability probe ------------------------------------------------------------------------
_PROBE = """
import json, os, socket
out = {"uid": os.getuid()}
try:
    socket.create_connection(("127.0.0.1", 9), timeout=0.5)
    out["net"] = "connected"
except OSError as e:
    out["net"] = e.errno
out["pid1_visible"] = os.path.exists("/proc/1/status")
print(json.dumps(out))
"""


def _candidates() -> list[frozenset[str]]:
    if sys.platform != "linux":
        return [frozenset()]
    if os.geteuid() == 0:
        sets = [
            {"uid", "mount", "net", "ipc", "hidepid"},
            {"uid", "mount", "net", "ipc"},
            {"uid", "net", "ipc"},
            {"uid"},
            {"net", "ipc"},
        ]
    else:
        sets = [{"userns", "net", "ipc"}]
    return [frozenset(s) for s in sets] + [frozenset()]


def capabilities(*, refresh: bool = False) -> Capabilities:
    """The strongest isolation that works here (probed once per process, then cached)."""
    global _caps
    with _caps_lock:
        if _caps is not None and not refresh:
            return _caps
        notes: list[str] = []
        lim = Limits(cpu_s=5, wall_s=20, nproc=16)
        chosen: frozenset[str] = frozenset()
        for feats in _candidates():
            res = _run([sys.executable, "-I", "main.py"], b"", {"main.py": _PROBE}, lim, feats)
            if res.status != "ok":
                notes.append(f"{'+'.join(sorted(feats)) or 'none'} unavailable ({res.reason[:120]})")
                continue
            try:
                info = json.loads(res.stdout)
            except ValueError:
                notes.append(f"{'+'.join(sorted(feats))}: probe printed no JSON")
                continue
            if "net" in feats and info.get("net") == "connected":
                notes.append("network namespace did not isolate the network")
                continue
            if "hidepid" in feats and info.get("pid1_visible"):
                notes.append("hidepid=2 did not hide other users' processes")
                continue
            chosen = feats
            break
        if "uid" not in chosen:
            notes.append("programs run as the calling user" + (" (root!)" if os.geteuid() == 0 else ""))
        if "net" not in chosen:
            notes.append("no network namespace: programs can use the network")
        _caps = Capabilities(chosen, tuple(notes[-4:]))
        return _caps


__all__ = ["Capabilities", "Limits", "RunResult", "RunStatus", "capabilities", "run", "run_python"]
