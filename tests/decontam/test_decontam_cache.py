"""The on-disk decontamination index cache: hits equal a fresh build, edits and corruption rebuild, off means off."""

from __future__ import annotations

import json
import os

import pytest

from tracesynth.config import DecontamConfig
from tracesynth.decontam import cache as decontam_cache
from tracesynth.decontam import index as decontam
from tracesynth.decontam.index import DecontamIndex
from tracesynth.records import Problem

LINE = "the quick brown fox jumps over the lazy dog near the river bank today"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACESYNTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(decontam, "_CACHE", {})
    return tmp_path / "cache" / "decontam"


def write_eval(path, questions):
    path.write_text("".join(json.dumps({"id": f"e{i}", "question": q}) + "\n" for i, q in enumerate(questions)))
    return path


def cfg(path):
    return DecontamConfig(shipped=False, eval_sets=[str(path)])


def no_reading(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the eval files were read although the index was cached")

    monkeypatch.setattr("tracesynth.sources.problems.iter_problems", refuse)


def test_a_second_process_loads_the_same_index_without_reading_the_eval_files(cache, tmp_path, monkeypatch):
    ev = write_eval(tmp_path / "ev.jsonl", [LINE, "a b c d e f g h i j"])
    built = DecontamIndex.from_config(cfg(ev))
    assert len(list(cache.glob("*.json"))) == 1
    monkeypatch.setattr(decontam, "_CACHE", {})  # as a new process would start
    no_reading(monkeypatch)
    loaded = DecontamIndex.from_config(cfg(ev))
    assert loaded is not built and loaded.grams == built.grams and loaded.sets == built.sets == {"ev.jsonl": 2}
    hit = loaded.check(Problem(id="p", prompt="Look: " + LINE[:60], answer="1"))
    assert hit is not None and (hit.eval_set, hit.eval_id) == ("ev.jsonl", "e0")


def test_the_shipped_sets_index_round_trips(cache, monkeypatch):
    built = DecontamIndex.from_config(DecontamConfig())
    monkeypatch.setattr(decontam, "_CACHE", {})
    no_reading(monkeypatch)
    loaded = DecontamIndex.from_config(DecontamConfig())
    assert loaded.grams == built.grams and len(loaded.grams) > 50_000 and loaded.sets == built.sets


def test_editing_an_eval_file_or_the_n_gram_size_makes_a_new_entry(cache, tmp_path, monkeypatch):
    ev = write_eval(tmp_path / "ev.jsonl", [LINE])
    DecontamIndex.from_config(cfg(ev))
    monkeypatch.setattr(decontam, "_CACHE", {})
    write_eval(ev, [LINE, "one two three four five six seven eight nine"])
    os.utime(ev, ns=(1, 10**18))  # a different mtime even on a coarse clock
    idx = DecontamIndex.from_config(cfg(ev))
    assert idx.sets == {"ev.jsonl": 2} and "one two three four five six seven eight" in idx.grams
    DecontamIndex.from_config(DecontamConfig(shipped=False, eval_sets=[str(ev)], n=5))
    assert len(list(cache.glob("*.json"))) == 3


def test_a_corrupt_entry_is_rebuilt_and_replaced(cache, tmp_path, monkeypatch):
    ev = write_eval(tmp_path / "ev.jsonl", [LINE])
    good = DecontamIndex.from_config(cfg(ev)).grams
    (entry,) = cache.glob("*.json")
    entry.write_bytes(b'{"items": [["ev.jsonl"')  # torn write
    monkeypatch.setattr(decontam, "_CACHE", {})
    assert DecontamIndex.from_config(cfg(ev)).grams == good
    assert decontam_cache.load(entry.stem) is not None


def test_off_writes_nothing_and_an_unwritable_cache_is_only_a_miss(tmp_path, monkeypatch):
    ev = write_eval(tmp_path / "ev.jsonl", [LINE])
    monkeypatch.setattr(decontam, "_CACHE", {})
    monkeypatch.setenv("TRACESYNTH_CACHE", "off")
    assert decontam_cache.cache_dir() is None
    assert DecontamIndex.from_config(cfg(ev)).sets == {"ev.jsonl": 1}
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TRACESYNTH_CACHE", str(blocker))
    monkeypatch.setattr(decontam, "_CACHE", {})
    assert DecontamIndex.from_config(cfg(ev)).sets == {"ev.jsonl": 1}
    assert decontam_cache.store("k", {"a b": ("s", "i")}, {"s": 1}) is None
