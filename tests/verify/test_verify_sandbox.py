"""Security tests for tracesynth/stages/verify/verifiers/sandbox.py: one adversarial property per test.

Every test ends with the machine clean: the autouse fixture fails the test if any process of a
sandbox uid is still alive afterwards (and kills it, by pid, so one failure cannot leak into the
next test). Properties that need an isolation feature this machine does not give (see
``sandbox.capabilities()``) are skipped with the reason; as root on Linux (CI) none is skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.registry import score
from tracesynth.stages.verify.verifiers import confine, sandbox
from tracesynth.stages.verify.verifiers.sandbox import Limits

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's isolation is Linux-only")

SHORT = Limits(cpu_s=1, wall_s=3, memory_mb=512, nproc=12, output_bytes=200_000)


def features() -> frozenset[str]:
    return sandbox.capabilities().features


def needs(*feats: str) -> None:
    missing = [f for f in feats if f not in features()]
    if missing:
        pytest.skip(f"sandbox here lacks {', '.join(missing)}: {sandbox.capabilities().describe()}")


def sandbox_processes() -> list[int]:
    """Live (non-zombie) processes whose real uid is in the sandbox's uid range."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields.get("Uid", "0").split()[0])
        if uid >= confine.UID_BASE and not fields.get("State", "").strip().startswith(("Z", "X")):
            out.append(int(entry.name))
    return out


@pytest.fixture(autouse=True)
def machine_left_clean() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 3
    left = sandbox_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = sandbox_processes()
    for pid in left:  # safety net so one failure does not leak into other tests
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"sandbox processes left behind: {left}"


def verdict(code: str, tests: list[dict] | None = None) -> tuple[str, str, str]:
    p = Problem(id="p", prompt="q", tests=tests or [{"input": "", "output": "ok"}], domain="code")
    s = Sample(id="s", problem_id="p", index=0, model="m", content=f"```python\n{code}\n```", reasoning="r")
    (v,) = score(p, s, ["code"], {"code": {"time_limit_s": 1, "nproc": 12, "memory_mb": 512}})
    return v.status, v.tag, v.reason


def test_capabilities_are_probed_and_described() -> None:
    caps = sandbox.capabilities()
    assert caps.describe()
    if os.geteuid() == 0:
        assert "uid" in caps.features, caps.describe()  # root can always switch to an unused uid
    res = sandbox.run_python("print('hi')")
    assert res.ok and res.stdout == "hi\n" and set(res.features) == set(caps.features)


def test_infinite_loop_hits_the_cpu_limit() -> None:
    t0 = time.monotonic()
    res = sandbox.run_python("while True:\n    pass", limits=Limits(cpu_s=1, wall_s=20))  # wall: a loaded box
    assert res.status == "timeout" and "CPU" in res.reason
    assert time.monotonic() - t0 < 20
    assert verdict("while True:\n    pass")[:2] == ("fail", "timeout")


def test_sleeping_forever_hits_the_wall_clock() -> None:
    res = sandbox.run_python("import time\ntime.sleep(600)", limits=Limits(cpu_s=5, wall_s=1))
    assert res.status == "timeout" and "wall" in res.reason and res.wall_s < 5


def test_fork_bomb_is_capped_by_the_process_limit() -> None:
    needs("uid")
    seen = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen[0] = max(seen[0], len(sandbox_processes()))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    try:
        res = sandbox.run_python(bomb, limits=Limits(cpu_s=1, wall_s=2, nproc=12))
    finally:
        stop.set()
        watcher.join()
    assert res.status in ("timeout", "error"), res
    assert 1 <= seen[0] <= 12, f"saw {seen[0]} sandbox processes"
    assert verdict(bomb)[0] == "fail"


def test_memory_bomb_hits_the_address_space_limit() -> None:
    for bomb in ("x = bytearray(8 * 2**30)", "xs = []\nwhile True:\n    xs.append(bytearray(10**7))"):
        res = sandbox.run_python(bomb, limits=Limits(cpu_s=5, wall_s=10, memory_mb=256))
        assert res.status == "memory" and "256 MB" in res.reason, res
    assert verdict("x = bytearray(8 * 2**30)")[:2] == ("fail", "resource_limit")


def test_huge_output_is_capped() -> None:
    res = sandbox.run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=SHORT)
    assert res.status == "output_limit"
    assert len(res.stdout) <= SHORT.output_bytes
    assert verdict("while True:\n    print('x' * 10000)")[:2] == ("fail", "resource_limit")


def test_writes_outside_the_working_directory_do_not_land(tmp_path: Path) -> None:
    needs("uid", "mount")
    open_dir = tmp_path / "world-writable"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    token = secrets.token_hex(6)
    targets = [
        open_dir / "escaped.txt",
        Path(__file__).resolve().parent / f"escaped-{token}.txt",
        Path(f"/tmp/tracesynth-escape-{token}"),
        Path(f"/var/tmp/tracesynth-escape-{token}"),
        Path(f"/dev/shm/tracesynth-escape-{token}"),
        Path.home() / f"escaped-{token}.txt",
    ]
    prog = (
        "import json, os\n"
        "done = {}\n"
        f"for path in {[str(t) for t in targets]!r} + ['../../escaped-{token}.txt', 'local.txt']:\n"
        "    try:\n"
        "        with open(path, 'w') as fh:\n"
        "            fh.write('x')\n"
        "        done[path] = 'written'\n"
        "    except OSError as e:\n"
        "        done[path] = e.strerror\n"
        "print(json.dumps(done))\n"
    )
    res = sandbox.run_python(prog, limits=SHORT)
    assert res.ok, res
    report = json.loads(res.stdout)
    assert report["local.txt"] == "written"  # its own directory is writable
    for t in targets:
        assert not t.exists(), f"{t} was written from the sandbox ({report.get(str(t))})"
    assert not list(Path("/").glob(f"escaped-{token}.txt")) and not list(Path("/tmp").glob(f"*{token}*"))
    assert verdict(prog)[0] == "fail"


def test_parent_environment_secret_does_not_leak() -> None:
    secret = "sk-fake-" + secrets.token_hex(12)
    prog = (
        "import os, glob\n"
        "print(dict(os.environ))\n"
        "for path in ['/proc/self/environ', f'/proc/{os.getppid()}/environ'] + glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        print(path, open(path, 'rb').read())\n"
        "    except OSError as e:\n"
        "        print(path, e.strerror)\n"
    )
    # the secret must be in the parent's *initial* environment (what /proc/<pid>/environ shows),
    # so the sandbox runs under an intermediary process started with it
    runner = (
        "import json\nfrom tracesynth.stages.verify.verifiers import sandbox\n"
        f"r = sandbox.run_python({prog!r}, limits=sandbox.Limits(cpu_s=2, wall_s=5))\n"
        "print(json.dumps({'status': r.status, 'stdout': r.stdout, 'stderr': r.stderr}))\n"
    )
    env = {**os.environ, "TRACESYNTH_FAKE_SECRET": secret}
    out = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-500:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["status"] == "ok", report
    assert secret not in report["stdout"] and secret not in report["stderr"]
    own_env = eval(report["stdout"].splitlines()[0])  # the program's own environment
    assert set(own_env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"}


def test_network_is_unreachable() -> None:
    needs("net")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    prog = (
        "import socket\n"
        f"for target in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        s = socket.create_connection(target, timeout=1)\n"
        "        s.sendall(b'leak')\n"
        "        print('connected', target)\n"
        "    except OSError as e:\n"
        "        print('blocked', target, e.errno)\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n"
        "    u.sendto(b'leak', ('1.1.1.1', 53))\n"
        "    print('udp sent')\n"
        "except OSError as e:\n"
        "    print('udp blocked', e.errno)\n"
    )
    try:
        res = sandbox.run_python(prog, limits=Limits(cpu_s=2, wall_s=6))
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert res.ok, res
    assert "connected" not in res.stdout and "udp sent" not in res.stdout
    assert res.stdout.count("blocked") == 3


def test_cannot_kill_the_parent_or_other_processes() -> None:
    needs("uid")
    victim = subprocess.Popen(["sleep", "30"])
    prog = (
        "import os, signal\n"
        f"for pid in (os.getppid(), {victim.pid}):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "        print('killed', pid)\n"
        "    except OSError as e:\n"
        "        print('refused', pid, e.errno)\n"
    )
    # the sandbox runs under an intermediary process, so a failure cannot take pytest down
    runner = (
        "import json, sys\nfrom tracesynth.stages.verify.verifiers import sandbox\n"
        f"r = sandbox.run_python({prog!r}, limits=sandbox.Limits(cpu_s=2, wall_s=5))\n"
        "print(json.dumps({'status': r.status, 'stdout': r.stdout}))\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-500:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert "killed" not in report["stdout"] and report["stdout"].count("refused") == 2, report
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def alive(pid: int) -> bool:
    try:
        state = [ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:")]
    except OSError:
        return False
    return bool(state) and not state[0].split()[1].startswith(("Z", "X"))


def test_background_processes_are_killed() -> None:
    needs("uid")  # without a uid of its own, a daemon that calls setsid() escapes (see the docstring)
    prog = (
        "import os, sys, time\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.write(w, str(os.getpid()).encode())\n"
        "        time.sleep(120)\n"
        "    os._exit(0)\n"
        "print(os.read(r, 32).decode())\n"
    )
    res = sandbox.run_python(prog, limits=SHORT)
    assert res.ok, res
    daemon = int(res.stdout.strip())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and alive(daemon):
        time.sleep(0.05)
    assert not alive(daemon)
