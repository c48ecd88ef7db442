"""The curate stage: keep policies, truncation, dedup, decontamination, lengths, per-problem picks, report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from curate_kit import make_run, recipe, sample

from tracesynth.accounting.tokens import text_tokens
from tracesynth.errors import ConfigError, UserError
from tracesynth.records import Problem, Sample, Trace, Verdict
from tracesynth.rundir.store import JsonlFile
from tracesynth.stages.curate import curate
from tracesynth.stages.curate.filters import TokenCounter, local_keep

GSM_TEST_0 = (
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. How many are left?"
)


def P(pid: str, text: str | None = None, **kw) -> Problem:
    text = text or f"Question {pid}: compute {len(pid) * 7} plus {pid.upper()}."
    return Problem(id=pid, prompt=text, answer="1", **kw)


def traces(run_dir) -> list[Trace]:
    return list(JsonlFile(run_dir / "traces.jsonl", Trace, key="sample_id").iter())


def report(run_dir) -> dict:
    return json.loads((run_dir / "curate.json").read_text())


def step(rep: dict, name: str) -> dict:
    return next(s for s in rep["steps"] if s["step"] == name)


@pytest.fixture
def mixed(tmp_path):
    run = tmp_path / "run"
    ids = make_run(
        run,
        [P("a"), P("b"), P("c"), P("d")],
        [
            sample("a", 0, status="pass", reasoning="short"),
            sample("a", 1, status="fail", reasoning="a much longer line of thought " * 3),
            sample("b", 0, status="fail"),
            sample("b", 1, status="unverifiable"),
            sample("c", 0, status="pass", finish="length"),
            sample("d", 0, status=[None]),  # no verdict at all
        ],
    )
    return run, ids


def test_keep_passing_drops_fail_unverifiable_truncated_and_unverified(mixed):
    run, ids = mixed
    res = curate(recipe(run))
    assert [t.sample_id for t in traces(run)] == [ids["a#0"]]
    assert res.traces == 1 and res.problems == 1
    rep = report(run)
    assert step(rep, "truncated")["dropped"] == {"truncated": 1}
    assert step(rep, "keep:passing")["dropped"] == {"failed": 2, "no_verdict": 1, "unverifiable": 1}
    assert rep["pass_rates"]["passing_samples"] == 1 and rep["pass_rates"]["samples"] == 6
    assert rep["output"] == {"traces": 1, "problems": 1, "domains": {"math": 1}}


def test_keep_solved_keeps_every_sample_of_solved_problems(mixed):
    run, ids = mixed
    curate(recipe(run, curate={"keep": "solved", "per_problem": 4}))
    assert sorted(t.sample_id for t in traces(run)) == sorted([ids["a#0"], ids["a#1"]])
    assert step(report(run), "keep:solved")["dropped"] == {"unsolved_problem": 3}


def test_keep_all_and_truncated_is_never_a_pass(mixed):
    run, ids = mixed
    curate(recipe(run, curate={"keep": "all", "per_problem": 4}))
    assert len(traces(run)) == 5  # everything but the truncated sample
    curate(recipe(run, curate={"keep": "all", "per_problem": 4, "drop_truncated": False}))
    assert ids["c#0"] in {t.sample_id for t in traces(run)}
    curate(recipe(run, curate={"keep": "passing", "drop_truncated": False}))  # its "pass" verdict does not count
    assert ids["c#0"] not in {t.sample_id for t in traces(run)}
    assert step(report(run), "keep:passing")["dropped"]["truncated"] == 1


def test_local_keep_policies():
    def vs(*statuses):
        return [Verdict(sample_id="s", problem_id="p", verifier=f"v{i}", status=s) for i, s in enumerate(statuses)]

    assert local_keep(vs("pass", "pass"), "all") and not local_keep(vs("pass", "unverifiable"), "all")
    assert local_keep(vs("fail", "pass"), "any") and not local_keep(vs("fail", "unverifiable"), "any")
    assert local_keep(vs("pass", "pass", "fail"), "majority") and not local_keep(vs("pass", "fail"), "majority")
    assert not local_keep([], "any")


def test_verify_keep_policy_over_several_verifiers(tmp_path):
    run = tmp_path / "run"
    specs = [sample("a", 0, status=["pass", "fail"]), sample("b", 0, status=["pass", "pass"])]
    ids = make_run(run, [P("a"), P("b")], specs, verifiers=("math", "format"))
    curate(recipe(run))
    assert [t.sample_id for t in traces(run)] == [ids["b#0"]]
    curate(recipe(run, verify={"keep": "any"}))
    assert len(traces(run)) == 2
    assert {v.verifier for v in traces(run)[0].verdicts} == {"math", "format"}


def test_trace_fields(tmp_path):
    run = tmp_path / "run"
    make_run(run, [P("a")], [sample("a", 0, reasoning="short"), sample("a", 1, status="fail")], template="sky_t1")
    curate(recipe(run, prompt={"template": "sky_t1"}))
    (t,) = traces(run)
    assert t.problem_id == "a" and t.teacher == "teacher-x" and t.reasoning == "short"
    assert t.messages[0]["role"] == "system" and t.messages[-1]["content"].endswith(P("a").prompt)
    assert t.verdicts[0].status == "pass" and t.cost_usd == 0.001
    assert t.metadata["passes"] == 1 and t.metadata["samples"] == 2 and t.metadata["pass_rate"] == 0.5
    assert t.metadata["tokens"] > 0


def test_samples_of_another_recipe_are_stale(mixed):
    run, _ = mixed
    res = curate(recipe(run, prompt={"template": "sky_t1"}))  # the samples were asked with boxed_math
    assert res.traces == 0 and step(report(run), "read")["dropped"] == {"stale": 6}
    assert "not read: 6 stale" in res.summary()  # on the console, not only in curate.json
    res = curate(recipe(run, teacher={"model": "other-model", "n": 8}))
    assert res.traces == 0
    curate(recipe(run, teacher={"model": "teacher-x", "n": 1}))  # index 1 is beyond n
    assert step(report(run), "read")["dropped"] == {"stale": 2}  # a#1 and b#1


def test_a_re_asked_sample_supersedes_the_truncated_one(tmp_path):
    run = tmp_path / "run"
    ids = make_run(run, [P("a")], [sample("a", 0, finish="length", status="fail")])
    with JsonlFile(run / "samples.jsonl", Sample) as ss:
        ss.append(
            Sample(
                id="s-retry",
                problem_id="a",
                index=0,
                model="teacher-x",
                reasoning="long enough",
                content="\\boxed{1}",
                finish_reason="stop",
                supersedes=ids["a#0"],
            )
        )
    with JsonlFile(run / "verdicts.jsonl", Verdict, key=("sample_id", "verifier")) as vs:
        vs.append(Verdict(sample_id="s-retry", problem_id="a", verifier="math", status="pass"))
    curate(recipe(run, curate={"keep": "all", "drop_truncated": False}))
    assert [t.sample_id for t in traces(run)] == ["s-retry"]
    assert step(report(run), "read")["dropped"] == {"superseded": 1}


def test_exact_and_near_dedup(tmp_path):
    run = tmp_path / "run"
    long_q = (
        "A train leaves the station at noon travelling east at sixty miles per hour while a second train "
        "leaves two hours later travelling west at eighty miles per hour; how far apart are they at six?"
    )
    near_q = long_q.replace("six?", "seven?")
    probs = [P("a", "What is 2+2?"), P("b", "what is 2 + 2 ?!"), P("c", long_q), P("d", near_q)]
    probs.append(P("e", "Something else."))
    make_run(run, probs, [sample(p.id, 0) for p in probs])
    curate(recipe(run))
    assert sorted(t.problem_id for t in traces(run)) == ["a", "c", "d", "e"]
    rep = report(run)
    assert rep["dedup"]["exact"] == [{"problem_id": "b", "duplicate_of": "a"}]
    curate(recipe(run, curate={"near_dedup": True, "near_threshold": 0.7}))
    assert sorted(t.problem_id for t in traces(run)) == ["a", "c", "e"]
    rep = report(run)
    assert rep["dedup"]["near"] == [{"problem_id": "d", "duplicate_of": "c"}]
    assert step(rep, "near_dedup")["dropped"] == {"near_duplicate": 1}


def test_duplicate_survivor_is_one_with_a_passing_trace(tmp_path):
    run = tmp_path / "run"
    make_run(
        run,
        [P("a", "What is 3+3?"), P("b", "What is 3 + 3?")],
        [sample("a", 0, status="fail"), sample("b", 0, status="pass")],
    )
    curate(recipe(run))
    assert [t.problem_id for t in traces(run)] == ["b"]


def test_decontamination_in_curation_lists_removals(tmp_path):
    run = tmp_path / "run"
    make_run(run, [P("clean"), P("dirty", GSM_TEST_0)], [sample("clean", 0), sample("dirty", 0)])
    res = curate(recipe(run))
    assert [t.problem_id for t in traces(run)] == ["clean"] and res.decontam_removed == 1
    rep = report(run)
    dc = rep["decontam"]["curate"]
    assert dc["enabled"] is True and "math500:test" in dc["eval_sets"]
    (hit,) = dc["removed"]
    assert hit["problem_id"] == "dirty" and hit["eval_set"] == "gsm8k:test" and hit["eval_id"] == "gsm8k-test-0000"
    assert len(hit["ngram"].split()) == 8
    assert step(rep, "decontaminate")["dropped"] == {"contaminated": 1}
    curate(recipe(run, curate={"decontam": {"enabled": False}}))
    assert len(traces(run)) == 2 and report(run)["decontam"]["curate"]["enabled"] is False


def test_pre_harvest_decontam_list_is_carried_into_the_report(tmp_path):
    run = tmp_path / "run"
    make_run(run, [P("a")], [sample("a", 0)])
    pre = {
        "enabled": True,
        "n": 8,
        "removed_count": 1,
        "removed": [{"problem_id": "x", "eval_set": "math500:test", "eval_id": "m1", "ngram": "a b c d e f g h"}],
    }
    (run / "harvest.json").write_text(json.dumps({"decontam": pre}))
    curate(recipe(run))
    assert report(run)["decontam"]["pre_harvest"] == pre


def test_per_problem_pick(tmp_path):
    run = tmp_path / "run"
    ids = make_run(run, [P("a")], [sample("a", i, reasoning="x" * (10 * (i + 1))) for i in range(4)])
    curate(recipe(run, curate={"per_problem": 2, "pick": "shortest"}))
    assert sorted(t.sample_id for t in traces(run)) == sorted([ids["a#0"], ids["a#1"]])
    curate(recipe(run, curate={"per_problem": 1, "pick": "longest"}))
    assert [t.sample_id for t in traces(run)] == [ids["a#3"]]
    curate(recipe(run, curate={"per_problem": 2, "pick": "random", "seed": 5}))
    first = sorted(t.sample_id for t in traces(run))
    curate(recipe(run, curate={"per_problem": 2, "pick": "random", "seed": 5}))
    assert sorted(t.sample_id for t in traces(run)) == first
    assert step(report(run), "per_problem")["dropped"] == {"extra_sample": 2}


def test_length_filters_and_share_over_sft_max_length(tmp_path):
    run = tmp_path / "run"
    make_run(
        run,
        [P("a"), P("b"), P("c")],
        [
            sample("a", 0, tokens=50),
            sample("b", 0, tokens=500),
            sample("c", 0, tokens=5000),
        ],
    )
    curate(recipe(run, curate={"min_tokens": 100, "max_tokens": 1000}))
    assert [t.problem_id for t in traces(run)] == ["b"]
    assert step(report(run), "length")["dropped"] == {"too_long": 1, "too_short": 1}
    curate(recipe(run, sft={"max_length": 1000}))
    lengths = report(run)["lengths"]
    assert lengths["sft_max_length"] == 1000 and lengths["over_sft_max_length"] == 1
    assert lengths["share_over_sft_max_length"] == pytest.approx(1 / 3, abs=1e-5)
    assert lengths["counted_with"].startswith("approx")


def test_student_tokenizer_counts_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "think": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    counter = TokenCounter(str(tmp_path))
    assert counter.exact and counter.count("one two three four", reported=999) == 4
    assert TokenCounter().count("abcdefgh", reported=0) == text_tokens("abcdefgh") == 3  # 8 characters at 3.5
    assert TokenCounter().count("x", reported=7) == 7
    run = tmp_path / "run"
    make_run(run, [P("a")], [sample("a", 0, reasoning="w " * 30, content="done", tokens=9999)])
    curate(recipe(run, curate={"tokenizer": str(tmp_path / "tokenizer.json")}))
    assert traces(run)[0].metadata["tokens"] == 31
    with pytest.raises(ConfigError, match=r"curate\.tokenizer: .*nope: no tokenizer\.json there"):
        TokenCounter(str(tmp_path / "nope"))


def test_samples_with_errors_and_unknown_problems_are_counted(tmp_path):
    run = tmp_path / "run"
    make_run(run, [P("a")], [sample("a", 0), sample("ghost", 0)])
    with JsonlFile(run / "samples.jsonl", Sample) as ss:
        ss.append(Sample(id="err", problem_id="a", index=9, model="m", error="HTTP 400"))
    curate(recipe(run))
    assert step(report(run), "read")["dropped"] == {"error": 1, "unknown_problem": 1}


def test_missing_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"samples\.jsonl: no samples; run `tracesynth harvest` first"):
        curate(recipe(tmp_path / "empty"))
    run = tmp_path / "run"
    make_run(run, [P("a")], [sample("a", 0)])
    (run / "verdicts.jsonl").unlink()
    with pytest.raises(UserError, match=r"verdicts\.jsonl: no verdicts; run `tracesynth verify` first"):
        curate(recipe(run))
    assert curate(recipe(run, curate={"keep": "all"})).traces == 1


def test_a_failing_run_keeps_the_previous_output(tmp_path):
    run = tmp_path / "run"
    make_run(run, [P("a"), P("b")], [sample("a", 0), sample("b", 0)])
    curate(recipe(run))
    before = (run / "traces.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"curate\.select\.domain_key: 'subject'"):
        curate(recipe(run, curate={"select": {"domain_key": "subject"}}))
    assert (run / "traces.jsonl").read_bytes() == before
    assert not (run / "traces.jsonl.tmp").exists()


def test_cli_curate(tmp_path):
    run = tmp_path / "run"
    make_run(run, [P("a"), P("b")], [sample("a", 0), sample("b", 0, status="fail")])
    r = tmp_path / "r.yaml"
    r.write_text(f"name: t\nrun_dir: {run}\nsource: {{kind: jsonl, path: x.jsonl}}\nteacher: {{model: teacher-x}}\n")
    res = subprocess.run(
        [sys.executable, "-m", "tracesynth", "curate", str(r)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "curate: 1 traces of 1 problems" in res.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tracesynth", "curate", str(r), "--set", f"run_dir={tmp_path / 'no'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "no samples" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_near_duplicates_same_with_worker_processes():
    from tracesynth.stages.curate.dedup import exact_duplicates, near_duplicates

    base = [
        f"item {i}: the quick brown fox number {i} jumps over {i * 7} lazy dogs near the river bank today"
        for i in range(120)
    ]
    items = [(f"a{i}", t) for i, t in enumerate(base)]
    items += [(f"b{i}", base[i].replace("today", "tonight")) for i in range(0, 120, 10)]
    one = near_duplicates(items, 0.7)
    two = near_duplicates(items, 0.7, workers=2, chunk=40)
    assert one == two
    assert {k: v for k, v in one.items() if k.startswith("b")} == {f"b{i}": f"a{i}" for i in range(0, 120, 10)}
    assert exact_duplicates([("x", "Hello, World!"), ("y", "hello world"), ("z", "hello")]) == {"y": "x"}


def test_operators_make_different_questions_and_unicode_symbols_are_their_ascii_twins():
    """The bug the demo hit: '47 + 38' and '47 − 38' were one question once punctuation was dropped."""
    from tracesynth.stages.curate.dedup import exact_duplicates, near_duplicates, normalise

    qs = [
        ("add", "What is 47 + 38?"),
        ("sub", "What is 47 − 38?"),
        ("mul", "What is 47 × 38?"),
        ("sub-ascii", "what is 47 - 38"),
        ("mul-ascii", "What is 47 * 38 ?"),
        ("paren", "What is (47 + 38)?"),
    ]
    assert normalise("What is 47 − 38?") == "what is 47 - 38"
    assert exact_duplicates(qs) == {"sub-ascii": "sub", "mul-ascii": "mul"}
    arithmetic = [
        (f"q{i}", f"Calculate {a} {op} {b}.")
        for i, (a, b, op) in enumerate((a, b, op) for a in range(10, 14) for b in range(20, 23) for op in "+-")
    ]
    assert near_duplicates(arithmetic, 0.8) == {}  # no two of these ask the same thing


def test_template_missing_field_is_exit_2_and_keeps_previous_traces(tmp_path):
    tpl = tmp_path / "with_answer.txt"
    tpl.write_text("{{ question }} (expected: {{ answer }})\n")
    run = tmp_path / "run"
    make_run(
        run,
        [P("a"), Problem(id="no-ans", prompt="What is nothing?")],
        [sample("a", 0), sample("no-ans", 0)],
        template=str(tpl),
    )
    (run / "traces.jsonl").write_text("")
    r = tmp_path / "r.yaml"
    r.write_text(
        f"name: t\nrun_dir: {run}\nsource: {{kind: jsonl, path: x.jsonl}}\nteacher: {{model: teacher-x}}\n"
        f"prompt: {{template: {tpl}}}\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "tracesynth", "curate", str(r)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: template {tpl}: problem no-ans: field 'answer' is missing"
    assert (run / "traces.jsonl").read_text() == ""
