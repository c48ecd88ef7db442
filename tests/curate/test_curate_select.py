"""s1-style selection: difficulty signals, domain-uniform diversity sampling with 2^-rank weights, labels."""

from __future__ import annotations

import json
import statistics
from collections import Counter

import pytest
from curate_kit import make_run, recipe, sample

from tracesynth.config import SelectConfig
from tracesynth.records import Problem, Sample, Trace, Verdict
from tracesynth.rundir.store import JsonlFile
from tracesynth.stages.curate import curate
from tracesynth.stages.curate.select import Candidate, difficulty_reason, labels_from_run, s1_select


def pool() -> list[Candidate]:
    cands = [Candidate(f"big{i}", "algebra", length=i * 10) for i in range(200)]
    cands += [Candidate(f"geo{i}", "geometry", length=i) for i in range(20)]
    cands += [Candidate(f"nt{i}", "number theory", length=i) for i in range(20)]
    return cands


def test_domains_are_picked_uniformly_not_by_size():
    chosen = s1_select(pool(), 30, seed=0)
    assert len(chosen) == 30 and len({c.problem_id for c in chosen}) == 30
    total = Counter(c.domain for seed in range(60) for c in s1_select(pool(), 30, seed=seed))
    # algebra is 83% of the pool, but a domain is drawn uniformly: about a third of the picks each
    for domain in ("algebra", "geometry", "number theory"):
        assert 0.29 < total[domain] / 1800 < 0.38, total


def test_longer_traces_are_favoured_with_2_pow_minus_rank():
    cands = [Candidate(f"p{i}", "one", length=i) for i in range(1000)]
    picks = [s1_select(cands, 1, seed=s)[0].length for s in range(400)]
    # rank 0 (the longest, 999) half the time, rank 1 a quarter, ...
    share = Counter(999 - x for x in picks)
    assert 0.4 < share[0] / 400 < 0.6 and 0.15 < share[1] / 400 < 0.35
    assert statistics.fmean(picks) > 990


def test_selection_is_seeded_and_stops_when_the_pool_is_empty():
    a = [c.problem_id for c in s1_select(pool(), 50, seed=3)]
    assert a == [c.problem_id for c in s1_select(pool(), 50, seed=3)]
    assert a != [c.problem_id for c in s1_select(pool(), 50, seed=4)]
    small = pool()[:5]
    assert len(s1_select(small, 50, seed=0)) == 5
    uniform = s1_select(pool(), 30, seed=0, diversity=False)
    assert len(uniform) == 30


def test_difficulty_reasons():
    c = Candidate("p", "d", 10, passes=2, samples=32)
    assert difficulty_reason(c, SelectConfig(weak_verifier="weak"), {"p"}) == "weak_solved"
    assert difficulty_reason(c, SelectConfig(weak_verifier="weak"), set()) is None
    assert difficulty_reason(c, SelectConfig(pass_count=(1, 3)), set()) is None  # LIMO: solved 1-3 of 32
    assert difficulty_reason(Candidate("q", "d", 1, passes=20, samples=32), SelectConfig(pass_count=(1, 3)), set()) == (
        "pass_count"
    )
    assert difficulty_reason(c, SelectConfig(pass_rate=(0.5, 1.0)), set()) == "pass_rate"


def test_stage_selection_with_weak_model_and_domains(tmp_path):
    run = tmp_path / "run"
    probs = [
        Problem(
            id=f"{d}{i}", prompt=f"{d} question number {i} about topic {d * 3}", answer="1", metadata={"subject": d}
        )
        for d in ("alg", "geo", "cmb")
        for i in range(10)
    ]
    specs = [sample(p.id, 0, reasoning="step " * (5 + i)) for i, p in enumerate(probs)]
    weak = [Verdict(sample_id=f"weak-{p.id}", problem_id=p.id, verifier="weak", status="pass") for p in probs[:5]]
    make_run(run, probs, specs, extra_verdicts=weak)
    sel = {"size": 9, "domain_key": "metadata.subject", "weak_verifier": "weak"}
    res = curate(recipe(run, curate={"select": sel, "seed": 1}))
    rep = json.loads((run / "curate.json").read_text())
    step = next(s for s in rep["steps"] if s["step"] == "select")
    assert step["dropped"] == {"weak_solved": 5, "not_selected": 16}
    assert res.traces == 9
    got = list(JsonlFile(run / "traces.jsonl", Trace, key="sample_id").iter())
    assert not {t.problem_id for t in got} & {p.id for p in probs[:5]}
    domains = Counter(t.metadata["select_domain"] for t in got)
    assert set(domains) <= {"alg", "geo", "cmb"} and max(domains.values()) <= 6
    again = curate(recipe(run, curate={"select": sel, "seed": 1}))
    assert again.traces == 9
    assert [t.sample_id for t in JsonlFile(run / "traces.jsonl", Trace, key="sample_id").iter()] == [
        t.sample_id for t in got
    ]


def test_weak_model_runs_drop_the_problems_they_solved(tmp_path):
    """s1's difficulty filter across runs: a weak model harvested and verified in its own folder."""
    import pytest

    from tracesynth.errors import UserError

    run, weak_run = tmp_path / "run", tmp_path / "weak-7b"
    probs = [Problem(id=f"p{i}", prompt=f"question number {i} about a topic", answer="1") for i in range(8)]
    make_run(run, probs, [sample(p.id, 0) for p in probs])
    weak_run.mkdir()
    weak = [
        Verdict(sample_id=f"w{i}", problem_id=f"p{i}", verifier="math", status=st)
        for i, st in enumerate(["pass", "fail", "pass", "unverifiable", "pass"])
    ]
    torn = Verdict(sample_id="w7", problem_id="p7", verifier="math", status="pass").model_dump_json()
    (weak_run / "verdicts.jsonl").write_text("".join(v.model_dump_json() + "\n" for v in weak) + torn[:30])
    res = curate(recipe(run, curate={"select": {"weak_runs": [str(weak_run)]}}))
    step = next(s for s in json.loads((run / "curate.json").read_text())["steps"] if s["step"] == "select")
    assert step["dropped"] == {"weak_solved": 3} and res.traces == 5
    kept = {t.problem_id for t in JsonlFile(run / "traces.jsonl", Trace, key="sample_id").iter()}
    assert kept == {"p1", "p3", "p5", "p6", "p7"}  # fail / unverifiable / absent / torn line: not solved
    assert (weak_run / "verdicts.jsonl").read_text().endswith(torn[:30])  # read, never repaired
    with pytest.raises(UserError, match=r"curate\.select\.weak_runs: .*nowhere.*no verdicts"):
        curate(recipe(run, curate={"select": {"weak_runs": [str(tmp_path / "nowhere")]}}))


def test_pass_count_over_k_samples_in_stage(tmp_path):
    run = tmp_path / "run"
    probs = [Problem(id=p, prompt=f"problem {p} text here", answer="1") for p in ("easy", "hard", "never")]
    specs = [sample("easy", i, status="pass") for i in range(4)]
    specs += [sample("hard", 0, status="pass")] + [sample("hard", i, status="fail") for i in range(1, 4)]
    specs += [sample("never", i, status="fail") for i in range(4)]
    make_run(run, probs, specs)
    curate(recipe(run, curate={"keep": "solved", "select": {"pass_count": [1, 2]}}))
    got = list(JsonlFile(run / "traces.jsonl", Trace, key="sample_id").iter())
    assert [t.problem_id for t in got] == ["hard"] and got[0].metadata["pass_rate"] == 0.25


def test_labels_from_a_classifier_run(tmp_path):
    labels_run = tmp_path / "labels"
    with JsonlFile(labels_run / "samples.jsonl", Sample) as ss:
        ss.append(Sample(id="l1", problem_id="a", index=0, model="m", content="It is \\boxed{Geometry}."))
        ss.append(Sample(id="l2", problem_id="b", index=0, model="m", content="thinking...\nNumber theory."))
    assert labels_from_run(labels_run) == {"a": "geometry", "b": "number theory"}
    run = tmp_path / "run"
    make_run(run, [Problem(id=p, prompt=f"q {p} words", answer="1") for p in "abc"], [sample(p, 0) for p in "abc"])
    curate(recipe(run, curate={"select": {"domain_from_run": str(labels_run)}}))
    got = {t.problem_id: t.metadata["select_domain"] for t in JsonlFile(run / "traces.jsonl", Trace, key="sample_id")}
    assert got == {"a": "geometry", "b": "number theory", "c": "unknown"}


def test_s1_preselects_verified_benchmark_problems_then_draws_with_the_benchmark_mix_after_700() -> None:
    from tracesynth.config.schema import PreselectRule
    from tracesynth.stages.curate.select import benchmark_weights

    aime = "AIME_1983_2024"
    cands = [Candidate(f"aime{i}", "geometry", length=100 + i, passes=i % 6 == 1, source=aime) for i in range(120)]
    cands += [Candidate(f"math{i}", "algebra", length=5000 + 50 * i, passes=1, source="openaimath") for i in range(40)]
    cands += [Candidate(f"nt{i}", f"d{i % 20}", length=i, passes=0, source="olympiads") for i in range(400)]
    rules = [PreselectRule(source="aime"), PreselectRule(source="openaimath", min_tokens=5600)]
    chosen = s1_select(cands, 100, seed=1, preselect=rules, benchmark_after=60, benchmark_mix={"AIME": 1.0})
    ids = [c.problem_id for c in chosen]
    first = [f"aime{i}" for i in range(1, 120, 6)] + [f"math{i}" for i in range(13, 40)]  # verified; > 5,600 tokens
    assert ids[: len(first)] == first and len(ids) == len(set(ids)) == 100
    # the draws after the 60th come from the benchmarks' domains only: AIME is all geometry here
    assert {c.domain for c in chosen[60:]} == {"geometry"}
    # before it, uniform over domains: most of the 21 domains show up
    assert len({c.domain for c in chosen[len(first) : 60]}) >= 8
    assert benchmark_weights(cands, {"AIME": 1.0, "olympiads": 0.5}) == pytest.approx(
        {"geometry": 1.0, **{f"d{i}": 0.5 / 20 for i in range(20)}}
    )
