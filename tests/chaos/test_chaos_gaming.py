"""Verifiers and exported data cannot be gamed: an always-equal object is not a correct answer, and a
teacher reply that smuggles chat markup into the answer never reaches the training set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile import CHAT_MARKUP, Hostile

import tracesynth as ts

pytestmark = pytest.mark.chaos

HONEST = "def f(x):\n    return x + 1\n"
CHEAT = "class X:\n    __eq__ = lambda s, o: True\n\n\ndef f(x):\n    return X()\n"
HUMANEVAL_CHECK = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 3\n"
CODE_PROBLEMS = {
    # LiveCodeBench / APPS functional tests: f(*args) == expected
    "functional": {
        "prompt": "Write f(x) that returns x + 1.",
        "tests": {"fn_name": "f", "inputs": [[1], [2]], "outputs": [2, 3]},
    },
    # a test script run after the solution
    "script": {"prompt": "Write f(x) that returns x + 1.", "tests": "assert f(1) == 2\nassert f(2) == 3\n"},
    # HumanEval: check(candidate) with the prompt's signature
    "humaneval": {
        "prompt": 'def f(x):\n    """Return x + 1."""\n',
        "tests": {"entry_point": "f", "test": HUMANEVAL_CHECK},
    },
}


@pytest.fixture(scope="module")
def code_verdicts(tmp_path_factory) -> dict[str, dict]:
    """Verify an honest and an always-equal answer for each test format once; verdicts by sample id."""
    folder = tmp_path_factory.mktemp("code")
    run = folder / "run"
    problems, samples = [], []
    for kind, spec in CODE_PROBLEMS.items():
        problems.append(ts.Problem(id=kind, prompt=spec["prompt"], tests=spec["tests"], domain="code", source="chaos"))
        for who, code in (("honest", HONEST), ("cheat", CHEAT)):
            samples.append(
                ts.Sample(
                    id=f"{kind}-{who}",
                    problem_id=kind,
                    index=0 if who == "honest" else 1,
                    model="hostile",
                    reasoning="Return x + 1.",
                    content=f"```python\n{code}```",
                    finish_reason="stop",
                )
            )
    run.mkdir(parents=True)
    for name, rows in (("problems", problems), ("samples", samples)):
        with (run / f"{name}.jsonl").open("w") as fh:
            fh.writelines(r.model_dump_json() + "\n" for r in rows)
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        json.dumps(
            {
                "run_dir": str(run),
                "verify": {"verifiers": ["code"], "workers": 1},
                "curate": {"decontam": {"enabled": False}},
            }
        )
    )
    ts.verify(ts.load_recipe(recipe))
    rows = [json.loads(line) for line in (run / "verdicts.jsonl").read_text().splitlines() if line.strip()]
    return {v["sample_id"]: v for v in rows if v["verifier"] == "code"}


@pytest.mark.parametrize("kind", list(CODE_PROBLEMS))
def test_code_verifier_fails_an_answer_whose_result_equals_everything(code_verdicts, kind):
    honest, cheat = code_verdicts[f"{kind}-honest"], code_verdicts[f"{kind}-cheat"]
    assert honest["status"] == "pass", f"control: the honest answer should pass ({honest['tag']}: {honest['reason']})"
    assert cheat["status"] == "fail", (
        f"{kind} tests passed an object whose __eq__ always returns True (status {cheat['status']})"
    )


def _stages(kit, tmp_path: Path, hostile: Hostile, *stages: str, **sections):
    kit.write_problems(tmp_path / "problems.jsonl", 3)
    recipe = kit.write_recipe(tmp_path, hostile.base_url, **sections)
    procs = {}
    for stage in stages:
        procs[stage] = kit.run_cli(stage, recipe, timeout=120)
        kit.assert_no_traceback(procs[stage])
    return recipe, procs


def test_format_verifier_fails_a_reply_holding_chat_markup(kit, tmp_path):
    with Hostile(by_question={"What is 11 + 32?": "chat_markup"}) as h:
        _, procs = _stages(kit, tmp_path, h, "harvest", "verify", verify={"verifiers": ["math", "format"]})
    assert all(p.returncode == 0 for p in procs.values()), {k: kit.tail(p.stderr) for k, p in procs.items()}
    samples = {s["id"]: s for s in kit.read_jsonl(tmp_path / "run" / "samples.jsonl")}
    marked = [sid for sid, s in samples.items() if CHAT_MARKUP in (s["content"] or "")]
    assert len(marked) == 1, "the hostile reply should be stored as sent"
    verdict = next(
        v
        for v in kit.read_jsonl(tmp_path / "run" / "verdicts.jsonl")
        if v["sample_id"] == marked[0] and v["verifier"] == "format"
    )
    assert (verdict["status"], verdict["tag"]) == ("fail", "chat_markup"), (
        f"format verdict on a reply holding '<|im_start|>user': {verdict['status']} / {verdict['tag'] or '-'}"
    )


def test_export_never_writes_a_row_holding_chat_markup(kit, tmp_path):
    with Hostile(by_question={"What is 11 + 32?": "chat_markup"}) as h:
        _, procs = _stages(
            kit,
            tmp_path,
            h,
            "harvest",
            "verify",
            "curate",
            "export",
            verify={"verifiers": ["math", "format"]},
            curate={"keep": "all"},
        )
    for stage in ("harvest", "verify", "curate"):
        assert procs[stage].returncode == 0, f"{stage}: {kit.tail(procs[stage].stderr)}"
    traces = kit.read_jsonl(tmp_path / "run" / "traces.jsonl")
    if not any(CHAT_MARKUP in (t.get("content") or "") for t in traces):
        return  # curation already dropped it (with keep: all): nothing for export to refuse
    if procs["export"].returncode != 0:
        return  # export refused the run
    import datasets

    ds = datasets.load_dataset(str(tmp_path / "run" / "dataset"), split="train")
    bad = [r for r in ds if "<|im_start|>" in json.dumps(r, ensure_ascii=False)]
    assert not bad, f"{len(bad)} of {len(ds)} exported rows hold chat markup ('<|im_end|>\\n<|im_start|>user')"
