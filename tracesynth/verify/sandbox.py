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

This module runs programs and reports what happened; it does not decide whether an output is
correct (tracesynth.verify.code does).
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RunStatus = Literal["ok", "error", "timeout", "memory", "output_limit", "sandbox_error"]

# Linux constants (linux/sched.h, linux/mount.h, linux/prctl.h)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38

_HIDE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home")
_WORKDIR_IN_NS = "/tmp/work"
_UID_BASE = 2_000_000_000  # far above any uid in /etc/passwd; one uid per (pid, run) pair
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"

_libc = ctypes.CDLL(None, use_errno=True)
_uid_counter = itertools.count()
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


@dataclass
class _Plan:
    features: frozenset[str]
    uid: int | None
    limits: Limits
    workdir: str
    files: dict[str, bytes] = field(default_factory=dict)
    expose: tuple[str, ...] = ()
    hide: tuple[str, ...] = ()


# -- child-side setup (runs between fork and exec) -------------------------------------------
def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _check(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _child_setup(plan: _Plan) -> Callable[[], None]:
    def setup() -> None:
        os.umask(0o022)
        f = plan.features
        flags = (_CLONE_NEWNET if "net" in f else 0) | (_CLONE_NEWIPC if "ipc" in f else 0)
        flags |= (_CLONE_NEWNS if "mount" in f else 0) | (_CLONE_NEWUSER if "userns" in f else 0)
        if flags:
            _check(_libc.unshare(flags), "unshare")
        if "mount" in f:
            _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
            fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in plan.expose]
            for d in plan.hide:
                mode = "1777" if d in ("/tmp", "/var/tmp", "/dev/shm") else "0755"
                size = plan.limits.tmpfs_mb if d == "/tmp" else 1
                _mount("tmpfs", d, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size}m,mode={mode}")
            for fd, path in zip(fds, plan.expose, strict=True):
                os.makedirs(path, 0o755, exist_ok=True)
                _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
                _mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
                os.close(fd)
            if "hidepid" in f:
                _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "hidepid=2")
            os.makedirs(plan.workdir, 0o700)
            for name, data in plan.files.items():
                with open(os.path.join(plan.workdir, name), "wb") as fh:
                    fh.write(data)
                if plan.uid is not None:
                    os.chown(os.path.join(plan.workdir, name), plan.uid, plan.uid)
            if plan.uid is not None:
                os.chown(plan.workdir, plan.uid, plan.uid)
            os.chdir(plan.workdir)
        if plan.uid is not None:
            os.setgroups([])
            os.setresgid(plan.uid, plan.uid, plan.uid)
            os.setresuid(plan.uid, plan.uid, plan.uid)
        _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        lim = plan.limits
        cpu = max(1, int(lim.cpu_s + 0.999))
        nproc = lim.nproc if plan.uid is not None else lim.nproc + _count_user_processes(os.getuid())
        for res, value in (
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_FSIZE, (lim.output_bytes,) * 2),
            (resource.RLIMIT_NOFILE, (lim.nofile,) * 2),
            (resource.RLIMIT_CORE, (0, 0)),
            (resource.RLIMIT_NPROC, (nproc,) * 2),
            (resource.RLIMIT_AS, (lim.memory_mb * 2**20,) * 2),  # last: the forked parent image is large
        ):
            resource.setrlimit(res, value)

    return setup


def _count_user_processes(uid: int) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    n += 1
            except OSError:
                continue
    return n


# -- parent side -----------------------------------------------------------------------------
def _python_roots() -> tuple[str, ...]:
    """Folders the interpreter needs (the venv and the base installation), resolved."""
    roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    roots.add(os.path.dirname(os.path.realpath(sys.executable)))
    return tuple(sorted(roots))


def _plan_mounts(features: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if "mount" not in features:
        return (), ()
    hide = tuple(d for d in _HIDE_DIRS if os.path.isdir(d) and not os.path.islink(d))
    expose = []
    for root in _python_roots():
        if any(root == d or root.startswith(d + "/") for d in hide) and root not in expose:
            expose.append(root)
    # drop roots nested in another exposed root
    expose = [r for r in expose if not any(r != o and r.startswith(o + "/") for o in expose)]
    return hide, tuple(expose)


def _new_uid() -> int:
    return _UID_BASE + ((os.getpid() & 0x3FFFFF) << 4) + (next(_uid_counter) & 0xF)


def _kill_all(proc: subprocess.Popen[bytes], uid: int | None) -> None:
    """Kill the program and everything it started (see the module docstring for the limits)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is not None:
        _kill_uid(uid)
    else:
        _kill_session(proc.pid)


# A small helper process, started once per process, that kills every process of a uid: it
# forks (cheap for a small process, unlike forking a worker that has sympy loaded), switches to
# the uid and calls kill(-1, SIGKILL), which the kernel applies to all processes of that uid
# at once (a fork bomb cannot outrun it).
_REAPER_SRC = r"""
import os, resource, signal, sys
_, hard = resource.getrlimit(resource.RLIMIT_CPU)
resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))  # not the verify worker's per-sample CPU limit
for line in sys.stdin:
    uid = int(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    sys.stdout.write("ok\n")
    sys.stdout.flush()
"""
_reaper_lock = threading.Lock()
_reaper: tuple[int, subprocess.Popen[str]] | None = None


_inherited: list[subprocess.Popen[str]] = []


def _forget_reaper_in_child() -> None:
    """A forked child must not use (or wait for) its parent's helper; it starts its own."""
    global _reaper
    if _reaper is not None:
        for fh in (_reaper[1].stdin, _reaper[1].stdout):
            try:
                fh.close()
            except (OSError, ValueError):
                pass
        _inherited.append(_reaper[1])  # kept referenced: never waited for or finalised here
        _reaper = None


os.register_at_fork(after_in_child=_forget_reaper_in_child)


@atexit.register
def _stop_reaper() -> None:
    global _reaper
    if _reaper is not None and _reaper[0] == os.getpid():
        proc = _reaper[1]
        _reaper = None
        _close(proc)


def _close(proc: subprocess.Popen[str]) -> None:
    try:
        proc.stdin.close()
        proc.wait(timeout=5)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    proc.stdout.close()


def _kill_uid(uid: int) -> None:
    """``kill(-1, SIGKILL)`` issued as ``uid``: every process of that uid, atomically w.r.t. forks."""
    global _reaper
    with _reaper_lock:
        for _attempt in range(2):
            if _reaper is None or _reaper[0] != os.getpid() or _reaper[1].poll() is not None:
                if _reaper is not None and _reaper[0] == os.getpid():
                    _close(_reaper[1])
                proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _REAPER_SRC], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={})
                _reaper = (os.getpid(), proc)
            proc = _reaper[1]
            try:
                proc.stdin.write(f"{uid}\n")
                proc.stdin.flush()
                if proc.stdout.readline().strip() == "ok":
                    return
            except (OSError, ValueError):
                pass
            _close(proc)
            _reaper = None
    raise OSError(f"could not kill the processes of sandbox uid {uid}")


def _kill_session(sid: int) -> None:
    """Kill processes still in the program's session (a process that left it is not found)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.getsid(int(entry.name)) == sid:
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


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
    uid = _new_uid() if "uid" in features else None
    hide, expose = _plan_mounts(features)
    data = {n: (c.encode() if isinstance(c, str) else c) for n, c in files.items()}
    host_dir = None
    try:
        if "mount" in features:
            workdir = _WORKDIR_IN_NS
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
        plan = _Plan(features, uid, lim, workdir, data if "mount" in features else {}, expose, hide)
        env = {"PATH": _ENV_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
        with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
            fin.write(stdin.encode() if isinstance(stdin, str) else stdin)
            fin.seek(0)
            try:
                proc = subprocess.Popen(
                    argv, stdin=fin, stdout=fout, stderr=ferr, cwd=host_dir or "/", env=env,
                    start_new_session=True, preexec_fn=_child_setup(plan),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                return RunResult("sandbox_error", None, "", "", time.monotonic() - t0,
                                 f"could not start the program: {type(exc).__name__}: {exc}", tuple(sorted(features)))
            timed_out = not _wait_exit(proc, lim.wall_s)
            _kill_all(proc, uid)
            rc = proc.wait()
            out, out_trunc = _read_capped(fout, lim.output_bytes)
            err, err_trunc = _read_capped(ferr, lim.output_bytes)
        wall = time.monotonic() - t0
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
        sets = [{"uid", "mount", "net", "ipc", "hidepid"}, {"uid", "mount", "net", "ipc"}, {"uid", "net", "ipc"},
                {"uid"}, {"net", "ipc"}]
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
