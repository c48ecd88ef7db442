"""The verify stage: run folder in, verdicts.jsonl + verify.json out, resumable, in worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tracesynth
from tracesynth.cli import main
from tracesynth.config import load_recipe
from tracesynth.errors import ConfigError, UserError
from tracesynth.records import Problem, Sample, Verdict
from tracesynth.rundir.store import JsonlFile
from tracesynth.stages.verify.stage import VerifyResult, verify

PROBLEMS = [
    Problem(id="m1", prompt="1+1?", answer="2"),
    Problem(id="m2", prompt="half?", answer="\\frac12"),
    Problem(id="c1", prompt="Pick.", answer="B", domain="choice", metadata={"choices": ["x", "y", "z"]}),
    Problem(id="k1", prompt="Echo the input.", domain="code", tests=[{"input": "7\n", "output": "7\n"}]),
]
SAMPLES = [
    ("m1", "so \\boxed{2}"),
    ("m1", "so \\boxed{3}"),
    ("m1", "I give up"),
    ("m2", "\\boxed{0.5}"),
    ("m2", "\\boxed{\\frac{}{}}"),
    ("c1", "Answer: (B)"),
    ("c1", "\\boxed{A}"),
    ("k1", "```python\nprint(input())\n```"),
    ("k1", "```python\nprint(8)\n```"),
    ("gone", "\\boxed{1}"),  # its problem is not in problems.jsonl
]


def make_run(run_dir: Path, samples: list[tuple[str, str]] = SAMPLES, problems: list[Problem] = PROBLEMS) -> None:
    with JsonlFile(run_dir / "problems.jsonl", Problem) as ps:
        ps.extend(problems)
    with JsonlFile(run_dir / "samples.jsonl", Sample) as ss:
        for i, (pid, content) in enumerate(samples):
            ss.append(
                Sample(
                    id=f"s{i}", problem_id=pid, index=i, model="m", content=content, reasoning="r", finish_reason="stop"
                )
            )


def recipe(run_dir: Path, *extra: str):
    return load_recipe(
        None,
        [
            f"run_dir={run_dir}",
            "verify.verifiers=[math, format]",
            "verify.by_domain={choice: [choice], code: [code, format]}",
            "verify.options={code: {time_limit_s: 2}}",
            *extra,
        ],
    )


def verdicts(run_dir: Path) -> dict[tuple[str, str], Verdict]:
    return {(v.sample_id, v.verifier): v for v in JsonlFile(run_dir / "verdicts.jsonl", Verdict, key=None).iter()}


def test_stage_writes_one_verdict_per_sample_and_verifier(tmp_path: Path) -> None:
    make_run(tmp_path)
    result = verify(recipe(tmp_path), workers=2)
    got = verdicts(tmp_path)
    assert len(got) == result.written == 18
    status = {k: v.status for k, v in got.items()}
    assert status[("s0", "math")] == "pass" and status[("s1", "math")] == "fail"
    assert got[("s2", "math")].tag == "no_answer"
    assert status[("s3", "math")] == "pass" and got[("s4", "math")].tag == "unparseable_answer"
    assert status[("s5", "choice")] == "pass" and status[("s6", "choice")] == "fail"
    assert ("s5", "math") not in got  # by_domain picks the verifiers
    assert status[("s7", "code")] == "pass" and got[("s8", "code")].tag == "mismatch"
    assert got[("s9", "math")].tag == "no_problem" and result.no_problem == 1
    assert result.counts["math"] == {"pass": 2, "fail": 2, "unverifiable": 2}
    assert result.tags["math"] == {"no_answer": 1, "mismatch": 1, "unparseable_answer": 1, "no_problem": 1}
    assert result.samples == 10 and result.kept == 4  # s0, s3, s5, s7
    assert result.sandbox and "no_problem" in json.dumps(result.unverifiable_reasons)
    on_disk = json.loads((tmp_path / "verify.json").read_text())
    assert VerifyResult.model_validate(on_disk) == result
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stages"]["verify"]["written"] == 18


def test_resume_writes_only_what_is_missing(tmp_path: Path) -> None:
    make_run(tmp_path)
    first = verify(recipe(tmp_path), workers=1)
    path = tmp_path / "verdicts.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    # a crash: the last 5 verdicts lost and a torn line left behind
    path.write_bytes(b"".join(lines[:-5]) + lines[-5][:20])
    again = verify(recipe(tmp_path), workers=2)
    assert again.existing == first.written - 5 and again.written == 5
    assert len(verdicts(tmp_path)) == first.written
    assert again.counts == first.counts and again.kept == first.kept
    assert verify(recipe(tmp_path)).written == 0


def test_adding_a_verifier_scores_only_the_new_pairs(tmp_path: Path) -> None:
    make_run(tmp_path)
    verify(recipe(tmp_path), workers=1)
    more = verify(recipe(tmp_path, "verify.verifiers=[math, format, choice]"), workers=1)
    assert more.written == 6  # the math-domain samples (and the orphan) get a choice verdict
    assert more.counts["choice"]["fail"] >= 1


def test_options_reach_the_verifiers(tmp_path: Path) -> None:
    make_run(tmp_path, samples=[("m1", "it is 2")])
    assert verify(recipe(tmp_path)).counts["math"] == {"fail": 1}
    other = tmp_path / "other"
    make_run(other, samples=[("m1", "it is 2")])
    assert verify(recipe(other, "verify.options.math={fallback: last_number}")).counts["math"] == {"pass": 1}


def test_bad_configuration_and_missing_input(tmp_path: Path) -> None:
    make_run(tmp_path)
    with pytest.raises(ConfigError, match="unknown verifier 'maths'"):
        verify(recipe(tmp_path, "verify.verifiers=[maths]"))
    with pytest.raises(ConfigError, match="unknown verifier"):
        verify(recipe(tmp_path, "verify.by_domain={code: [no_such_module:fn]}"))
    with pytest.raises(UserError, match="no samples"):
        verify(recipe(tmp_path / "empty"))


def test_package_is_callable_as_the_stage(tmp_path: Path) -> None:
    make_run(tmp_path)
    assert tracesynth.verify(recipe(tmp_path), workers=1).written == 18
    from tracesynth import verify as exported

    assert exported(recipe(tmp_path)).existing == 18


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path)
    (tmp_path / "r.yaml").write_text(f"run_dir: {tmp_path}\nverify: {{verifiers: [math], workers: 1}}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(tmp_path / "r.yaml"), "--set", "verify.by_domain={code: [code]}", "-q"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "math" in out and "kept" in out and "pass" in out
    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(tmp_path / "r.yaml"), "--set", f"run_dir={tmp_path / 'nothing'}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no samples" in err[0]


@pytest.mark.slow
def test_a_worker_stuck_in_c_code_is_killed_and_the_run_goes_on(tmp_path: Path) -> None:
    make_run(tmp_path, samples=[("m1", "fine 1"), ("m1", "STUCK"), ("m1", "fine 2"), ("m1", "fine 3")])
    name = "verify_plugins:stuck_in_c"
    r = load_recipe(
        None,
        [f"run_dir={tmp_path}", f"verify.verifiers=['{name}']", f"verify.options={{'{name}': {{timeout_s: 0.2}}}}"],
    )
    result = verify(r, workers=1, chunk_size=1)
    got = verdicts(tmp_path)
    assert (got[("s1", name)].status, got[("s1", name)].tag) == ("unverifiable", "timeout"), got[("s1", name)]
    assert "hard CPU limit" in got[("s1", name)].reason
    assert [got[(f"s{i}", name)].status for i in (0, 2, 3)] == ["pass"] * 3
    assert result.worker_restarts >= 1


def test_superseded_rows_are_not_verified(tmp_path):
    """A truncated sample re-asked with a larger budget (`supersedes`) is verified once: the live row."""
    run = tmp_path / "run"
    with JsonlFile(run / "problems.jsonl", Problem) as st:
        st.append(Problem(id="p1", prompt="1+1?", answer="2"))
    with JsonlFile(run / "samples.jsonl", Sample) as st:
        st.append(Sample(id="s-old", problem_id="p1", index=0, model="m", content="\\boxed{", finish_reason="length"))
        st.append(
            Sample(
                id="s-new",
                problem_id="p1",
                index=0,
                model="m",
                content="\\boxed{2}",
                finish_reason="stop",
                supersedes="s-old",
            )
        )
    verify(load_recipe(None, [f"run_dir={run}", "verify.workers=1"]))
    rows = [json.loads(x) for x in (run / "verdicts.jsonl").read_text().splitlines()]
    assert [(r["sample_id"], r["status"]) for r in rows] == [("s-new", "pass")]
