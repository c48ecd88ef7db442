"""The Linux mechanics behind sandbox.py: what runs between fork and exec, and the clean-up after.

* :func:`child_setup` — in the forked child, before ``exec``: new network / IPC / mount (and,
  unprivileged, user) namespaces; in the mount namespace, private propagation, empty tmpfs over
  the directories to hide, the Python installation bound back read-only, ``/proc`` remounted
  with ``hidepid=2``, the working directory made and filled; then the switch to the run's uid,
  ``no_new_privs``, a parent-death signal and the rlimits (last, because the forked image of
  a large parent would not fit under ``RLIMIT_AS``).
* :func:`kill_all` — after the run: the process group, then every process of the run's uid via
  a small helper process that forks, switches to that uid and calls ``kill(-1, SIGKILL)``
  (without a uid of its own: the processes still in the run's session).

What this protects against and what it does not is stated in sandbox.py; this module holds no
policy (which features to use is decided there, by probing).
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracesynth.stages.verify.verifiers.sandbox import Limits

# Linux constants (linux/sched.h, linux/mount.h, linux/prctl.h)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38

HIDE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home")
WORKDIR_IN_NS = "/tmp/work"
UID_BASE = 2_000_000_000  # far above any uid in /etc/passwd; one uid per (pid, run) pair
ENV_PATH = "/usr/local/bin:/usr/bin:/bin"

_libc = ctypes.CDLL(None, use_errno=True)
_uid_counter = itertools.count()


@dataclass
class Plan:
    """Everything the child needs, computed in the parent before the fork."""

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


def child_setup(plan: Plan) -> Callable[[], None]:
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


def plan_mounts(features: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if "mount" not in features:
        return (), ()
    hide = tuple(d for d in HIDE_DIRS if os.path.isdir(d) and not os.path.islink(d))
    expose = []
    for root in _python_roots():
        if any(root == d or root.startswith(d + "/") for d in hide) and root not in expose:
            expose.append(root)
    # drop roots nested in another exposed root
    expose = [r for r in expose if not any(r != o and r.startswith(o + "/") for o in expose)]
    return hide, tuple(expose)


def new_uid() -> int:
    return UID_BASE + ((os.getpid() & 0x3FFFFF) << 4) + (next(_uid_counter) & 0xF)


def kill_all(proc: subprocess.Popen[bytes], uid: int | None) -> None:
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
                if fh is not None:
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
    assert proc.stdin is not None and proc.stdout is not None  # started with both piped
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
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _REAPER_SRC],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env={},
                )
                _reaper = (os.getpid(), proc)
            proc = _reaper[1]
            assert proc.stdin is not None and proc.stdout is not None
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


__all__ = [
    "ENV_PATH",
    "HIDE_DIRS",
    "UID_BASE",
    "WORKDIR_IN_NS",
    "Plan",
    "child_setup",
    "kill_all",
    "new_uid",
    "plan_mounts",
]
