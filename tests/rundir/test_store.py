"""The run store: whole-line writes, torn-tail recovery, unique ids, one writer, streamed reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tracesynth.errors import RunLockedError, StoreError
from tracesynth.records import Sample, Verdict
from tracesynth.rundir.store import JsonlFile, RunStore


def sample(i: int) -> Sample:
    return Sample(id=f"s-{i}", problem_id=f"p-{i}", index=0, model="m", content=f"\\boxed{{{i}}}")


def test_append_and_stream(tmp_path):
    st = JsonlFile(tmp_path / "samples.jsonl", Sample)
    st.extend(sample(i) for i in range(5))
    st.close()
    again = JsonlFile(tmp_path / "samples.jsonl", Sample)
    assert [s.id for s in again.iter()] == [f"s-{i}" for i in range(5)]
    assert "s-3" in again and len(again) == 5


def test_duplicate_id_refused_in_process_and_after_reopen(tmp_path):
    st = JsonlFile(tmp_path / "s.jsonl", Sample)
    st.append(sample(1))
    with pytest.raises(StoreError, match="id 's-1' is already written"):
        st.append(sample(1))
    st.close()
    again = JsonlFile(tmp_path / "s.jsonl", Sample)
    with pytest.raises(StoreError, match="already written"):
        again.append(sample(1))
    assert len(again) == 1


def test_composite_key(tmp_path):
    st = JsonlFile(tmp_path / "v.jsonl", Verdict, key=("sample_id", "verifier"))
    st.append(Verdict(sample_id="s", problem_id="p", verifier="math", status="pass"))
    st.append(Verdict(sample_id="s", problem_id="p", verifier="format", status="fail"))
    with pytest.raises(StoreError):
        st.append(Verdict(sample_id="s", problem_id="p", verifier="math", status="fail"))


@pytest.mark.parametrize("cut", [1, 10, -2])
def test_torn_last_line_is_dropped_and_reported(tmp_path, cut):
    path = tmp_path / "s.jsonl"
    with JsonlFile(path, Sample) as st:
        st.extend(sample(i) for i in range(3))
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_start + cut] if cut > 0 else data[:cut])  # mid-line cut
    st = JsonlFile(path, Sample)
    assert len(st) == 2
    assert [s.id for s in st.iter()] == ["s-0", "s-1"]
    assert len(st.recovered) == 1 and "torn last line" in st.recovered[0] and ":3:" in st.recovered[0]
    st.append(sample(2))  # the lost record can be written again, on a clean line
    st.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["s-0", "s-1", "s-2"]


def test_complete_but_invalid_last_line_is_dropped(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "x": \n')
    st = JsonlFile(path, None)
    assert len(st) == 1 and st.recovered


def test_corrupt_line_before_last_is_an_error(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n')
    with pytest.raises(StoreError, match=r"s\.jsonl:2: corrupt record"):
        JsonlFile(path, None)


def test_duplicate_on_disk_is_an_error(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(StoreError, match=r"s\.jsonl:2: duplicate id 'a'"):
        JsonlFile(path, None)


def test_invalid_record_names_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a", "problem_id": "p", "index": 0, "model": "m"}\n{"id": "b"}\n')
    with pytest.raises(StoreError, match=r"s\.jsonl:2: not a valid Sample"):
        list(JsonlFile(path, Sample).iter())


def test_second_writer_gets_lock_error_naming_pid(tmp_path):
    with RunStore(tmp_path / "run"):
        with pytest.raises(RunLockedError, match=rf"in use by another process \(pid {os.getpid()}\)"):
            RunStore(tmp_path / "run")
    RunStore(tmp_path / "run").close()  # released on close


def test_lock_is_released_when_holder_is_killed(tmp_path):
    run = tmp_path / "run"
    code = (
        f"import time; from tracesynth.rundir.store import RunStore; s = RunStore({str(run)!r}); "
        "print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            RunStore(run)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    RunStore(run).close()


def test_manifest_merges(tmp_path):
    with RunStore(tmp_path / "run") as rs:
        rs.update_manifest(recipe_hash="abc")
        rs.mark_stage("harvest", started=1.0)
        rs.mark_stage("harvest", ended=2.0)
        m = rs.manifest()
    assert m["recipe_hash"] == "abc"
    assert m["stages"]["harvest"] == {"started": 1.0, "ended": 2.0}
    assert "python" in m["versions"]


@pytest.mark.slow
def test_100k_lines_iterated_in_bounded_memory(tmp_path):
    """Iterating a 100k-line stage must not load it: peak memory grows far less than the file."""
    path = tmp_path / "big.jsonl"
    pad = "x" * 400
    with path.open("w") as fh:
        for i in range(100_000):
            fh.write(json.dumps({"id": f"s-{i}", "problem_id": "p", "index": i, "model": "m", "content": pad}) + "\n")
    size_mb = path.stat().st_size / 2**20
    script = textwrap.dedent(f"""
        import resource
        from tracesynth.records import Sample
        from tracesynth.rundir.store import JsonlFile
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        st = JsonlFile({str(path)!r}, Sample, key=None)
        n = sum(1 for _ in st.iter())
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(n, (after - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == 100_000
    assert size_mb > 40
    assert float(out[1]) < 15, f"iterating grew RSS by {out[1]} MB for a {size_mb:.0f} MB file"


def test_kill_9_while_appending_leaves_only_whole_records(tmp_path):
    path = tmp_path / "s.jsonl"
    code = textwrap.dedent(f"""
        from tracesynth.rundir.store import JsonlFile
        st = JsonlFile({str(path)!r}, None)
        i = len(st)
        while True:
            st.append({{"id": f"s-{{i}}", "content": "y" * (i % 5000)}})
            i += 1
    """)
    import signal
    import time

    for _ in range(3):
        before = path.stat().st_size if path.exists() else 0
        proc = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.monotonic() + 60  # a busy machine may take long to start the interpreter
        while time.monotonic() < deadline and (path.stat().st_size if path.exists() else 0) < before + 200_000:
            assert proc.poll() is None
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # mid-append: it has been writing for a while
        proc.wait(timeout=10)
        st = JsonlFile(path, None)
        ids = [r["id"] for r in st.iter()]
        assert ids == [f"s-{i}" for i in range(len(ids))]  # contiguous, unique, whole
        assert len(ids) > 0
