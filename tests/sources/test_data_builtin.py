"""The shipped problem sets: registry, checksums, builtin sources, `tracesynth data list`, packaging."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter

import pytest
from repo import REPO

from tracesynth.config import SourceConfig
from tracesynth.errors import DataError, SourceError
from tracesynth.sources import builtin as data
from tracesynth.sources.problems import iter_problems
from tracesynth.sources.resources import data_dir, prompts_dir

ROOT = REPO
EXPECTED = {
    ("gsm8k", "train"): (7473, "pool"),
    ("gsm8k", "test"): (1319, "eval"),
    ("math500", "test"): (500, "eval"),
    ("aime24", "test"): (30, "eval"),
    ("amc23", "test"): (40, "eval"),
    ("humaneval", "test"): (164, "eval"),
    ("arith_sample", "train"): (100, "pool"),
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracesynth", *args], capture_output=True, text=True, timeout=120)


def test_registry_matches_files_rows_and_checksums():
    sets = data.registry()
    assert {(d.name, d.split): (d.rows, d.role) for d in sets} == EXPECTED
    for d in sets:
        raw = d.path.read_bytes()
        assert hashlib.sha256(raw).hexdigest() == d.sha256, d.key
        assert raw.count(b"\n") == d.rows, d.key
        assert d.licence


def test_readme_checksum_table_matches_registry():
    readme = (data_dir() / "README.md").read_text()
    listed = dict((f, h) for h, f in re.findall(r"^\s+([0-9a-f]{64})\s+(\S+\.jsonl)$", readme, re.M))
    assert listed == {d.file: d.sha256 for d in data.registry()}


def test_eval_sets_are_the_shipped_benchmarks():
    assert {d.key for d in data.eval_sets()} == {
        "gsm8k:test",
        "math500:test",
        "aime24:test",
        "amc23:test",
        "humaneval:test",
    }


def test_lookup_by_name_and_split():
    assert data.get("math500").key == "math500:test"
    assert data.get("gsm8k", "train").file == "gsm8k_train.jsonl"
    assert data.parse_ref("gsm8k:test") == ("gsm8k", "test") and data.parse_ref("aime24") == ("aime24", None)
    assert data.is_builtin("gsm8k/test") and not data.is_builtin("my_file.jsonl")


def test_unknown_name_lists_known_sets():
    with pytest.raises(DataError, match=r"unknown data set 'gsm9k'; shipped sets are: aime24:test, .*gsm8k:train"):
        data.get("gsm9k")


def test_ambiguous_and_unknown_split():
    with pytest.raises(DataError, match=r"'gsm8k' has several splits \(train, test\)"):
        data.get("gsm8k")
    with pytest.raises(DataError, match=r"'math500' has no split 'train'; its splits are: test"):
        data.get("math500", "train")


def test_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    copy = tmp_path / "data"
    shutil.copytree(data_dir(), copy)
    with (copy / "aime24.jsonl").open("a") as fh:
        fh.write('{"id": "extra", "problem": "tampered", "answer": "1"}\n')
    monkeypatch.setattr(data, "data_dir", lambda: copy)
    with pytest.raises(DataError, match=r"aime24\.jsonl: checksum mismatch for aime24:test"):
        list(iter_problems(SourceConfig(kind="builtin", name="aime24")))
    (copy / "aime24.jsonl").unlink()
    with pytest.raises(DataError, match=r"aime24\.jsonl: shipped data set aime24:test is missing"):
        data.verified_path(data.get("aime24"))


def test_builtin_sources_map_columns():
    stats = Counter()
    gsm = list(iter_problems(SourceConfig(kind="builtin", name="gsm8k", split="train"), stats=stats))
    assert len(gsm) == 7473 and stats["rows"] == 7473
    assert gsm[0].id == "gsm8k-train-0000" and gsm[0].answer == "72" and gsm[0].source == "gsm8k/train"
    he = list(iter_problems(SourceConfig(kind="builtin", name="humaneval")))
    assert len(he) == 164 and he[0].id == "HumanEval/0" and he[0].domain == "code"
    assert "def check(candidate)" in he[0].tests and he[0].metadata["entry_point"] == "has_close_elements"
    aime = {p.id: p for p in iter_problems(SourceConfig(kind="builtin", name="aime24"))}
    assert len(aime) == 30 and all(p.answer for p in aime.values())


def test_eval_sets_are_read_whole_unless_hygiene_is_set():
    full = list(iter_problems(SourceConfig(kind="builtin", name="math500")))
    assert len(full) == 500 and full[0].metadata["unique_id"].startswith("test/")
    assert len(list(iter_problems(SourceConfig(kind="builtin", name="aime24")))) == 30
    stats = Counter()
    strict = SourceConfig(kind="builtin", name="math500", hygiene={"drop_figures": True})
    pool = list(iter_problems(strict, stats=stats))
    assert len(pool) + stats["drop:figure"] == 500 and stats["drop:figure"] == 42  # [asy] diagrams
    from tracesynth.config import load_recipe

    r = load_recipe(None, ["source.kind=builtin", "source.name=math500", "source.hygiene.drop_figures=true"])
    assert len(list(iter_problems(r))) == 458


def test_builtin_source_errors_are_one_line():
    with pytest.raises(DataError, match=r"unknown data set 'nope'"):
        list(iter_problems(SourceConfig(kind="builtin", name="nope")))
    with pytest.raises(SourceError, match=r"source\.name: required for kind builtin"):
        list(iter_problems(SourceConfig(kind="builtin")))


def test_data_list_cli():
    res = run_cli("data", "list")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split()[:6] == ["name", "split", "rows", "role", "licence", "sha256"]
    by_key = {tuple(line.split()[:2]): line for line in lines[1:]}
    for d in data.registry():
        line = by_key[(d.name, d.split)]
        assert f" {d.rows} " in line and f" {d.role} " in line and d.sha256 in line and line.endswith("ok")
        assert d.licence in line


def test_data_list_cli_reports_mismatch_exit_2(tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data_dir(), copy)
    (copy / "amc23.jsonl").write_text("{}\n")
    code = (
        "import sys, tracesynth.sources.builtin as d, pathlib; d.data_dir = lambda: pathlib.Path(sys.argv[1]);"
        "from tracesynth.cli import main; main(['data', 'list'])"
    )
    res = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "MISMATCH" in res.stdout
    assert res.stderr.startswith("error: ") and "checksum mismatch for amc23:test" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_resources_found_in_checkout():
    assert data_dir() == ROOT / "data" or data_dir().parent.name == "_shipped"
    assert (prompts_dir() / "boxed_math.txt").is_file()
    assert json.loads((data_dir() / "registry.json").read_text())["sets"]


@pytest.mark.slow
def test_wheel_ships_prompts_and_data(tmp_path):
    """A real (non-editable) build puts prompts/ and data/ inside the package, where resources.py looks."""
    out = tmp_path / "wheel"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    (whl,) = out.glob("tracesynth-*.whl")
    target = tmp_path / "site"
    with zipfile.ZipFile(whl) as zf:
        names = set(zf.namelist())
        zf.extractall(target)
    for d in data.registry():
        assert f"tracesynth/_shipped/data/{d.file}" in names
    assert "tracesynth/_shipped/data/registry.json" in names
    assert "tracesynth/_shipped/prompts/sky_t1.txt" in names
    code = (
        "import tracesynth.sources.resources as r, tracesynth.sources.builtin as d, tracesynth.sources.prompts as p;"
        "print(r.data_dir()); print(d.verified_path(d.get('gsm8k','test'))); print(p.builtin_templates())"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert str(target / "tracesynth" / "_shipped" / "data") in run.stdout
    assert "boxed_math" in run.stdout
