"""Problem sources: every file kind, column mapping, caps, shuffling, mixing, hygiene, gym, errors."""

from __future__ import annotations

import csv
import json
import tracemalloc
from collections import Counter

import pytest

from tracesynth.config import SourceConfig, load_recipe
from tracesynth.errors import SourceError
from tracesynth.sources.problems import iter_problems

ROWS = [{"id": f"q{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i), "level": i % 3} for i in range(20)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def problems(**kw):
    stats = Counter()
    return list(iter_problems(SourceConfig(**kw), stats=stats)), stats


def test_jsonl_basic_fields_and_metadata(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", ROWS)
    ps, stats = problems(kind="jsonl", path=str(f))
    assert [p.id for p in ps] == [f"q{i}" for i in range(20)]
    assert ps[3].prompt == "What is 3 + 3?" and ps[3].answer == "6"
    assert ps[3].metadata == {"level": 0}
    assert ps[3].source == "p.jsonl"  # the file name, not the machine-specific path
    assert stats["rows"] == 20 and stats["problems"] == 20


def test_column_mapping_and_content_ids(tmp_path):
    rows = [{"q": "Compute 1+1.", "gold": "2", "area": "algebra"}, {"q": "Compute 2+2.", "gold": "4", "area": "geo"}]
    f = write_jsonl(tmp_path / "p.jsonl", rows)
    ps, _ = problems(kind="jsonl", path=str(f), columns={"question": "q", "answer": "gold", "domain": "area"})
    got = [(p.prompt, p.answer, p.domain) for p in ps]
    assert got == [("Compute 1+1.", "2", "algebra"), ("Compute 2+2.", "4", "geo")]
    assert ps[0].id.startswith("p-")  # content hash when no id column
    again, _ = problems(kind="jsonl", path=str(f), columns={"question": "q", "answer": "gold", "domain": "area"})
    assert [p.id for p in again] == [p.id for p in ps]


def test_csv_and_parquet_and_disk_give_the_same_problems(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref, _ = problems(kind="jsonl", path=str(write_jsonl(tmp_path / "p.jsonl", ROWS)))
    with (tmp_path / "p.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(ROWS[0]))
        w.writeheader()
        w.writerows(ROWS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "p.parquet", row_group_size=7)
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    for kind, name in (("csv", "p.csv"), ("parquet", "p.parquet"), ("disk", "ds")):
        got, _ = problems(kind=kind, path=str(tmp_path / name), name="p.jsonl")
        assert [(p.id, p.prompt, p.answer) for p in got] == [(p.id, p.prompt, p.answer) for p in ref], kind


def test_limit_offset_after_hygiene_are_disjoint(tmp_path):
    rows = [*ROWS]
    rows[1] = {**rows[1], "answer": ""}  # dropped by hygiene: offsets count kept problems
    f = write_jsonl(tmp_path / "p.jsonl", rows)
    head, _ = problems(kind="jsonl", path=str(f), limit=5, shuffle=True, seed=7)
    tail, _ = problems(kind="jsonl", path=str(f), offset=5, shuffle=True, seed=7)
    assert len(head) == 5 and len(tail) == 14
    assert not {p.id for p in head} & {p.id for p in tail}
    assert {p.id for p in head} | {p.id for p in tail} == {r["id"] for r in rows} - {"q1"}


def test_seeded_shuffle_is_reproducible_and_a_permutation(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", ROWS)
    a, _ = problems(kind="jsonl", path=str(f), shuffle=True, seed=1)
    b, _ = problems(kind="jsonl", path=str(f), shuffle=True, seed=1)
    c, _ = problems(kind="jsonl", path=str(f), shuffle=True, seed=2)
    assert [p.id for p in a] == [p.id for p in b]
    assert [p.id for p in a] != [p.id for p in c]
    assert sorted(p.id for p in a) == sorted(r["id"] for r in ROWS)
    assert [p.id for p in a] != [r["id"] for r in ROWS]


def test_buffer_shuffle_for_csv(tmp_path):
    with (tmp_path / "p.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(ROWS[0]))
        w.writeheader()
        w.writerows(ROWS)
    a, _ = problems(kind="csv", path=str(tmp_path / "p.csv"), shuffle=True, shuffle_buffer=4, seed=3)
    assert sorted(p.id for p in a) == sorted(r["id"] for r in ROWS)
    assert [p.id for p in a] != [r["id"] for r in ROWS]


def test_mixing_weights_interleave_sources(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": f"a{i}", "question": f"qa{i}", "answer": "1"} for i in range(400)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": f"b{i}", "question": f"qb{i}", "answer": "1"} for i in range(400)])
    srcs = [SourceConfig(kind="jsonl", path=str(a), weight=3), SourceConfig(kind="jsonl", path=str(b), weight=1)]
    stats = Counter()
    ps = list(iter_problems(srcs, stats=stats))
    assert len(ps) == 800 and stats["source:a.jsonl"] == 400 and stats["source:b.jsonl"] == 400
    first = ps[:200]
    share_a = sum(p.id.startswith("a") for p in first) / len(first)
    assert 0.65 < share_a < 0.85  # ~3:1 while both sources last
    assert [p.id for p in ps] == [p.id for p in iter_problems(srcs)]  # seeded
    zero = [srcs[0], SourceConfig(kind="jsonl", path=str(b), weight=0)]
    assert all(p.id.startswith("a") for p in iter_problems(zero))


def test_recipe_with_source_list(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", ROWS)
    r = tmp_path / "r.yaml"
    r.write_text(f"source:\n  - {{kind: jsonl, path: {f}, limit: 2}}\n  - {{kind: builtin, name: aime24, limit: 3}}\n")
    ps = list(iter_problems(load_recipe(r)))
    assert len(ps) == 5 and {p.source for p in ps} == {"p.jsonl", "aime24/test"}


def test_hygiene_drops_counted_by_reason(tmp_path):
    rows = [
        {"id": "ok", "question": "Find x.", "answer": "\\boxed{3}"},
        {"id": "asy", "question": "In the figure [asy]draw((0,0)--(1,1));[/asy] find x.", "answer": "\\boxed{1}"},
        {"id": "img", "question": "See ![fig](http://x.org/a.png) then answer.", "answer": "\\boxed{1}"},
        {"id": "noans", "question": "Find y.", "answer": ""},
        {"id": "nullans", "question": "Find z.", "answer": None},
        {"id": "nobox", "question": "Find w.", "answer": "4"},
        {"id": "ok", "question": "Find x again.", "answer": "\\boxed{3}"},
    ]
    f = write_jsonl(tmp_path / "p.jsonl", rows)
    ps, stats = problems(kind="jsonl", path=str(f), hygiene={"require_boxed": True})
    assert [p.id for p in ps] == ["ok"]
    assert stats["drop:figure"] == 2 and stats["drop:missing_answer"] == 2
    assert stats["drop:no_boxed"] == 1 and stats["drop:duplicate_id"] == 1
    loose, _ = problems(kind="jsonl", path=str(f), hygiene={"drop_figures": False, "require_answer": False})
    assert len(loose) == 6


def test_gym_source_keeps_entry_for_scoring():
    import reasoning_gym

    ps, stats = problems(kind="gym", name="basic_arithmetic", size=6, seed=11, config={"min_terms": 2, "max_terms": 3})
    assert len(ps) + stats["drop:duplicate_id"] == 6
    p = ps[0]
    assert p.source == "gym/basic_arithmetic"
    assert p.metadata["gym_task"] == "basic_arithmetic"
    entry = p.metadata["gym_entry"]
    json.dumps(entry)  # JSON-safe
    assert entry["question"] == p.prompt and entry["answer"] == p.answer
    score = reasoning_gym.get_score_answer_fn("basic_arithmetic")
    assert score(p.answer, entry) == 1.0
    regen = reasoning_gym.create_dataset(
        "basic_arithmetic",
        **{
            "size": p.metadata["gym_config"]["size"],
            "seed": p.metadata["gym_config"]["seed"],
            **p.metadata["gym_config"]["config"],
        },
    )
    assert regen[p.metadata["gym_index"]]["question"] == p.prompt


def test_bounded_memory_streaming(tmp_path):
    f = tmp_path / "big.jsonl"
    with f.open("w") as fh:
        for i in range(15_000):
            row = {"id": f"b{i}", "question": f"What is {i} times 3? " + "pad " * 40, "answer": str(3 * i)}
            fh.write(json.dumps(row))
            fh.write("\n")
    tracemalloc.start()
    n = 0
    for _ in iter_problems(SourceConfig(kind="jsonl", path=str(f), limit=None)):
        n += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 15_000
    assert peak < 12_000_000  # the file is ~3.5 MB of text; only the id set grows


# -- errors: one line naming file, row and field -------------------------------------------------
def test_invalid_json_line_names_file_and_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps(ROWS[0]) + "\n{oops\n")
    with pytest.raises(SourceError, match=r"p\.jsonl:2: invalid JSON"):
        problems(kind="jsonl", path=str(f))


def test_non_object_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("[1, 2]\n")
    with pytest.raises(SourceError, match=r"p\.jsonl:1: expected a JSON object, got list"):
        problems(kind="jsonl", path=str(f))


def test_missing_mapped_column_names_it(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", ROWS)
    msg = r"p\.jsonl: column 'prob' \(source\.columns\.question\) not found; columns are: id"
    with pytest.raises(SourceError, match=msg):
        problems(kind="jsonl", path=str(f), columns={"question": "prob"})


def test_unknown_column_field(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", ROWS)
    with pytest.raises(SourceError, match=r"source\.columns: unknown field\(s\) \['questoin'\]"):
        problems(kind="jsonl", path=str(f), columns={"questoin": "question"})


def test_row_without_question_names_row_and_field(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [ROWS[0], {"id": "x", "question": "  ", "answer": "1"}])
    with pytest.raises(SourceError, match=r"p\.jsonl:2: no question \(field 'question' is empty or missing\)"):
        problems(kind="jsonl", path=str(f))


def test_no_question_column(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"text": "hi", "answer": "1"}])
    with pytest.raises(SourceError, match=r"p\.jsonl: no question column .*columns are: text, answer"):
        problems(kind="jsonl", path=str(f))


def test_answer_column_missing(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"question": "hi"}])
    with pytest.raises(SourceError, match=r"p\.jsonl: no answer column"):
        problems(kind="jsonl", path=str(f))
    ok, _ = problems(kind="jsonl", path=str(f), hygiene={"require_answer": False})
    assert ok[0].answer is None


def test_missing_file_and_unreadable_parquet(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.jsonl: no such file or directory \(source\.path\)"):
        problems(kind="jsonl", path=str(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match=r"bad\.parquet: cannot read Parquet"):
        problems(kind="parquet", path=str(bad))


def test_csv_ragged_row(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("question,answer\nhi,1\nho,2,extra\n")
    with pytest.raises(SourceError, match=r"p\.csv:3: more values than header columns"):
        problems(kind="csv", path=str(f))


def test_unknown_gym_task():
    with pytest.raises(SourceError, match=r"reasoning-gym task 'no_such_task'"):
        problems(kind="gym", name="no_such_task", size=3)


def test_gym_needs_size():
    with pytest.raises(SourceError, match=r"source\.size"):
        problems(kind="gym", name="basic_arithmetic")


def test_a_capped_source_reads_only_what_it_yields(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", ROWS)
    ps, stats = problems(kind="jsonl", path=str(f), limit=4)
    assert len(ps) == 4 and stats["rows"] == 4
    none, stats = problems(kind="jsonl", path=str(f), limit=0)
    assert none == [] and stats["rows"] == 0


@pytest.mark.parametrize(
    "question, source_type, reason",
    [
        ("Find x. [asy] draw((0,0)--(1,1)); [/asy]", "qq8933/AIME_1983_2024", None),  # s1 keeps AIME figures
        ("Find x. [asy] draw((0,0)--(1,1)); [/asy] p1. first", "qq8933/AIME_1983_2024", None),  # whatever else
        ("Find x. [asy] draw((0,0)--(1,1)); [/asy]", "AI-MO/NuminaMath-CoT/olympiads", "figure"),
        ("See ![Image] and answer.", "olympiads", "figure_or_pattern"),
        ("p1. Show that p3. holds.", "olympiads", "s1_pattern"),
        ("Part p12. of the task", "olympiads", "s1_pattern"),
        ("The **2x** term", "olympiads", "s1_pattern"),
        ("A **bold** word, then: what is 2+2?", "olympiads", "s1_pattern"),  # s1's lookahead: a digit anywhere after
        ("A **bold** word. What is two plus two?", "olympiads", None),
        ("Count the p1000. items and the ap12 ones.", "olympiads", None),
    ],
)
def test_s1_quality_patterns_as_its_filter_notebook(question: str, source_type: str, reason: str | None) -> None:
    from tracesynth.config.schema import HygieneConfig
    from tracesynth.records import Problem
    from tracesynth.sources.problems import hygiene_reason

    hygiene = HygieneConfig(drop_figures=True, s1_patterns=True, figures_allowed_from=["AIME"])
    problem = Problem(prompt=question, answer="4", metadata={"source_type": source_type})
    got = hygiene_reason(problem, hygiene)
    if reason == "figure_or_pattern":
        assert got in ("figure", "s1_pattern")
    else:
        assert got == reason
    assert hygiene_reason(problem, HygieneConfig(drop_figures=False)) is None  # all of it is opt-in


def test_where_per_source_template_and_difficulty_bounds_as_sky_t1_reads_numina(tmp_path) -> None:
    """SkyThought's numina tasks: rows of one `source` value, difficulty from a labelled set by question text
    (rows without a label dropped), and the task's own prompt."""
    from tracesynth.config import PromptConfig, SourceConfig
    from tracesynth.sources.problems import iter_problems
    from tracesynth.sources.prompts import render_messages

    rows = [
        {"problem": f"Problem {i}: what is {i} + 1?", "solution": f"\\boxed{{{i + 1}}}", "source": src}
        for i, src in enumerate(["amc_aime", "math", "olympiads", "math", "math", "amc_aime"])
    ]
    pool = tmp_path / "numina.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = tmp_path / "labels.jsonl"  # problem 4 has no label; whitespace differs from the pool's text
    labels.write_text(
        "".join(
            json.dumps({"problem": "  " + rows[i]["problem"].replace(" ", "  "), "gpt_difficulty_parsed": d}) + "\n"
            for i, d in [(0, 2), (1, 3), (2, 9), (3, 5), (5, "n/a")]
        )
    )
    template = tmp_path / "numina.txt"
    template.write_text("[system]\nsys\n[user]\nReturn your final response within \\boxed{}. {{ question }}\n")
    src = SourceConfig.model_validate(
        {
            "kind": "jsonl",
            "path": str(pool),
            "columns": {"question": "problem", "answer": "solution"},
            "where": {"source": ["math", "olympiads"]},
            "template": str(template),
            "difficulty": {
                "labels": {"kind": "jsonl", "path": str(labels), "columns": {"question": "problem"}},
                "min": 4,
            },
        }
    )
    stats: Counter[str] = Counter()
    got = list(iter_problems(src, stats=stats))
    assert [p.prompt for p in got] == [rows[2]["problem"], rows[3]["problem"]]  # olympiads 9, math 5
    assert [p.metadata["difficulty"] for p in got] == [9.0, 5.0]
    assert stats["drop:where"] == 2 and stats["drop:difficulty"] == 1 and stats["drop:no_difficulty"] == 1
    # head: the first rows that match `where`, before the difficulty filter (SkyThought's olympiads --end 20000)
    assert [p.prompt for p in iter_problems(src.model_copy(update={"head": 2}))] == [rows[2]["problem"]]
    messages = render_messages(got[0], PromptConfig(template="boxed_math", system="You are Qwen."))
    assert messages[0] == {"role": "system", "content": "You are Qwen."}  # prompt.system is the teacher's
    assert messages[1]["content"] == f"Return your final response within \\boxed{{}}. {rows[2]['problem']}"
