"""Evaluation: statistics, the endpoint path against the simulated teacher, local eval and budget forcing."""

from __future__ import annotations

import asyncio
import json
import random
from itertools import combinations
from pathlib import Path

import pytest
from distill_kit import make_dataset, problems, recipe_for, write_problems

from tracesynth.config import load_recipe
from tracesynth.errors import ConfigError
from tracesynth.stages.evaluate.generation import EndpointGenerator, GenerationSpec, LocalGenerator
from tracesynth.stages.evaluate.metrics import accuracy_summary, bootstrap_interval, pass_at_k, wilson_interval
from tracesynth.stages.evaluate.stage import evaluate

# -- statistics ---------------------------------------------------------------------------------


def test_wilson_interval_matches_the_closed_form() -> None:
    lo, hi = wilson_interval(81, 263)  # the textbook example: 0.2553 .. 0.3662 at 95%
    assert lo == pytest.approx(0.2553, abs=1e-3) and hi == pytest.approx(0.3662, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_unbiased_pass_at_k_equals_enumeration() -> None:
    for n, c in [(5, 0), (5, 1), (5, 3), (6, 6), (8, 2)]:
        samples = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(samples, k))
            exact = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(exact), (n, c, k)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_bootstrap_interval_covers_the_mean_and_narrows_with_data() -> None:
    rng = random.Random(0)
    small = [rng.random() < 0.6 for _ in range(50)]
    big = [rng.random() < 0.6 for _ in range(2000)]
    lo_s, hi_s = bootstrap_interval([float(x) for x in small])
    lo_b, hi_b = bootstrap_interval([float(x) for x in big])
    assert lo_b < sum(big) / len(big) < hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 3


def test_accuracy_summary_uses_wilson_for_one_sample_and_reports_pass_at_k() -> None:
    one = accuracy_summary([(1, 1), (1, 0), (1, 1), (1, 1)])
    assert one["pass@1"] == 0.75 and one["ci_method"] == "wilson" and "pass@2" not in one
    many = accuracy_summary([(4, 1), (4, 4), (4, 0)])
    assert many["pass@1"] == pytest.approx((0.25 + 1 + 0) / 3) and many["ci_method"] == "bootstrap"
    assert many["pass@4"] == pytest.approx((1 + 1 + 0) / 3)
    assert many["pass@2"] == pytest.approx((0.5 + 1 + 0) / 3)


# -- the endpoint path against the simulated teacher ----------------------------------------------


def _gsm8k_key() -> Path:
    from tracesynth.sources.builtin import get, verified_path

    return verified_path(get("gsm8k", "test"))


def test_endpoint_eval_recovers_the_simulated_accuracy(tmp_path: Path) -> None:
    from tracesynth.sim import SimTeacher

    wrong = 0.3
    with SimTeacher(wrong_rate=wrong, answer_key=_gsm8k_key(), seed=3) as sim:
        recipe = load_recipe(
            None,
            [
                f"run_dir={tmp_path / 'run'}",
                "eval.source={kind: builtin, name: gsm8k, split: test, limit: 300}",
                "eval.backend=endpoint",
                f"eval.base_url={sim.base_url}",
                "eval.model=sim-student",
                "eval.api_key_env=null",
                "eval.max_new_tokens=4096",
                "eval.concurrency=32",
            ],
        )
        result = evaluate(recipe)
        served = sim.stats()
    block = result.blocks["after"]
    lo, hi = block["ci"]
    assert block["n_problems"] == 300 and block["ci_method"] == "wilson"
    assert lo <= 1 - wrong <= hi, (block["pass@1"], lo, hi)
    assert 0.6 < block["pass@1"] < 0.8
    assert hi - lo < 0.12
    assert block["stop_rate"] == 1.0
    assert served["routes"].get("/v1/chat/completions") == 300  # one call per item, through the real HTTP path
    data = json.loads((tmp_path / "run" / "eval.json").read_text())
    protocol = data["after"]["protocol"]
    for key in (
        "model",
        "backend",
        "base_url",
        "temperature",
        "top_p",
        "n",
        "max_new_tokens",
        "thinking_delimiters",
        "system_prompt",
        "template_hash",
        "seed",
        "verifiers",
        "verifier_versions",
        "eval_set",
    ):
        assert key in protocol, key
    assert protocol["model"] == "sim-student" and protocol["eval_set"]["name"] == "gsm8k"
    rows = [json.loads(line) for line in (tmp_path / "run" / "eval_items.jsonl").open()]
    assert len(rows) == 300
    assert sum(r["passed"] for r in rows) == round(block["pass@1"] * 300)
    failed = next(r for r in rows if not r["passed"])
    assert failed["verdicts"][0]["status"] == "fail" and failed["verdicts"][0]["tag"]


def test_budget_forcing_through_completions(tmp_path: Path) -> None:
    """Against /v1/completions with the template applied client-side: the cap truncates, Wait extends."""
    from tracesynth.sim import SimTeacher
    from tracesynth.teacher.client import TeacherClient

    prompt = "<|im_start|>user\nWhat is 4821 + 3967?<|im_end|>\n<|im_start|>assistant\n"

    async def run(spec: GenerationSpec):
        async with TeacherClient([sim.base_url], model="sim", concurrency=4) as client:
            return (await EndpointGenerator(client).generate([prompt], spec))[0]

    with SimTeacher(seed=1) as sim:
        plain = asyncio.run(run(GenerationSpec(max_new_tokens=2048)))
        capped = asyncio.run(run(GenerationSpec(max_new_tokens=2048, thinking_cap=12)))
        waited = asyncio.run(run(GenerationSpec(max_new_tokens=2048, waits=2)))
    assert "\\boxed{8788}" in plain.text and plain.waits == 0 and not plain.forced
    assert capped.forced and capped.thinking_tokens == 12 and capped.text.count("</think>") == 1
    assert capped.thinking_tokens < waited.thinking_tokens
    assert waited.waits == 2 and waited.text.count("Wait") == 2 and waited.text.count("</think>") == 1
    assert waited.thinking_tokens > plain.thinking_tokens
    assert "\\boxed{8788}" in waited.text.split("</think>")[1]


def test_endpoint_budget_table_through_evaluate(tmp_path: Path) -> None:
    """eval.thinking_caps / eval.wait_extensions against an endpoint: /v1/completions on the client-side template."""
    from tracesynth.sim import SimTeacher

    eval_file = write_problems(tmp_path / "eval.jsonl", problems(20, digits=3, seed=4, prefix="b"))
    with SimTeacher(seed=2, wrong_rate=0.5) as sim:
        recipe = load_recipe(
            None,
            [
                f"run_dir={tmp_path / 'run'}",
                f"eval.source={{kind: jsonl, path: {eval_file}}}",
                "eval.backend=endpoint",
                f"eval.base_url={sim.base_url}",
                "eval.model=sim",
                "eval.api_key_env=null",
                "eval.max_new_tokens=1024",
                "eval.thinking_caps=[8]",
                "eval.wait_extensions=[1]",
            ],
        )
        result = evaluate(recipe)
        routes = sim.stats()["routes"]
    block = result.blocks["after"]
    cap, wait = block["thinking_caps"]
    assert routes.get("/v1/chat/completions") == 20 and routes.get("/v1/completions", 0) >= 20 * 2 + 20 * 3
    assert cap["mode"] == "cap" and cap["thinking_tokens"] == 8 and cap["forced_rate"] == 1.0
    assert cap["mean_thinking_tokens"] == 8
    assert wait["mode"] == "wait" and wait["mean_waits"] == 1.0 and wait["forced_rate"] == 0.0
    assert wait["mean_thinking_tokens"] > block["mean_thinking_tokens"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "eval_items.jsonl").open()]
    assert sum(r["mode"] == "wait" and r["reasoning"].count("Wait") == 1 for r in rows) == 20


# -- local evaluation of a trained tiny student (the run that proves it learns is shared) -----------


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory):
    """The default tiny student trained on 2-digit + 1-digit addition traces (600 steps, about a minute)."""
    from tracesynth.stages.train.trainer import sft

    run = tmp_path_factory.mktemp("eval") / "run"
    recipe = recipe_for(run, "sft.max_steps=600")
    train = problems(400, digits=2, digits_b=1, seed=11)
    make_dataset(recipe, train)
    sft(recipe)
    held_out = problems(60, digits=2, digits_b=1, seed=12, prefix="h")
    eval_file = write_problems(run.parent / "eval.jsonl", held_out)
    return run, eval_file, {p.prompt for p in train}


def _eval_recipe(run: Path, eval_file: Path, *sets: str):
    return recipe_for(
        run, f"eval.source={{kind: jsonl, path: {eval_file}}}", "eval.max_new_tokens=160", "eval.batch_size=32", *sets
    )


@pytest.mark.slow
def test_training_raises_held_out_accuracy_well_above_the_untrained_student(student) -> None:
    run, eval_file, seen = student
    held_out = [json.loads(line) for line in eval_file.open()]
    unseen = sum(row["problem"] not in seen for row in held_out)
    result = evaluate(_eval_recipe(run, eval_file, "eval.baseline=true"))
    after, before = result.blocks["after"], result.blocks["before"]
    # problems the student trained on (same prompt) are dropped, so this measures generalisation
    assert result.excluded == len(held_out) - unseen and after["n_problems"] == before["n_problems"] == unseen
    assert before["pass@1"] == 0.0 and before["model"].startswith("untrained(")
    assert after["pass@1"] >= 0.6, after["pass@1"]
    assert after["ci"][0] > before["ci"][1]  # the intervals do not overlap
    # the trained student learned to end its turn; the untrained one runs to max_new_tokens
    assert after["stop_rate"] >= 0.95 and before["stop_rate"] <= 0.05
    assert after["protocol"]["model_fingerprint"] != before["protocol"]["model_fingerprint"]
    assert after["by_level"]["2+1 digits"]["n_problems"] == unseen
    data = json.loads((run / "eval.json").read_text())
    assert set(data) >= {"after", "before", "warnings", "template"}
    assert data["excluded_seen_in_training"] == result.excluded
    assert data["template"]["thinking_delimiters"] == ["<think>", "</think>"]
    rows = [json.loads(line) for line in (run / "eval_items.jsonl").open()]
    assert {r["label"] for r in rows} == {"after", "before"}
    assert all(r["verdicts"] and r["verdicts"][0]["verifier"] == "math" for r in rows)


@pytest.mark.slow
def test_eval_resumes_without_generating_again(student, monkeypatch: pytest.MonkeyPatch) -> None:
    run, eval_file, _ = student
    recipe = _eval_recipe(run, eval_file)
    first = evaluate(recipe)
    items = (run / "eval_items.jsonl").read_text().count("\n")

    def boom(*a, **k):
        raise AssertionError("generated again")

    monkeypatch.setattr(LocalGenerator, "generate", boom)
    again = evaluate(recipe)
    assert (run / "eval_items.jsonl").read_text().count("\n") == items
    assert again.blocks["after"]["pass@1"] == first.blocks["after"]["pass@1"]


@pytest.mark.slow
def test_template_mismatch_warns_naming_both(student, caplog: pytest.LogCaptureFixture) -> None:
    run, eval_file, _ = student
    trained_with = json.loads((run / "student" / "template.json").read_text())["system_prompt"]
    result = evaluate(_eval_recipe(run, eval_file, "eval.system_prompt=You are terse."))
    assert any(
        "system prompt mismatch" in w and "You are terse." in w and repr(trained_with) in w for w in result.warnings
    )
    assert "system prompt mismatch" in caplog.text
    assert result.blocks["after"]["protocol"]["system_prompt"] == "You are terse."


@pytest.mark.slow
def test_unknown_verifier_is_a_config_error(student) -> None:
    run, eval_file, _ = student
    with pytest.raises(ConfigError, match=r"eval\.verifiers: unknown verifier 'nope'"):
        evaluate(_eval_recipe(run, eval_file, "eval.verifiers=[nope]"))


@pytest.mark.slow
def test_local_budget_forcing_truncates_and_extends(student) -> None:
    from tracesynth.config import PromptConfig
    from tracesynth.sources.prompts import render_messages
    from tracesynth.stages.train.student import load_student

    run, _, _ = student
    model, tok = load_student(run / "student")
    gen = LocalGenerator(model, tok, batch_size=8)
    prompts = [
        tok.apply_chat_template(render_messages(p, PromptConfig()), tokenize=False, add_generation_prompt=True)
        for p in problems(8, digits=2, digits_b=1, seed=99)
    ]
    plain = gen.generate(prompts, GenerationSpec(max_new_tokens=200))
    capped = gen.generate(prompts, GenerationSpec(max_new_tokens=200, thinking_cap=10))
    waited = gen.generate(prompts, GenerationSpec(max_new_tokens=400, waits=2))
    assert all(g.ended_thinking and g.stopped and not g.forced for g in plain)  # it closes its thinking itself
    for p, c in zip(plain, capped, strict=True):
        # the cap: its own first 10 thinking tokens, then the end of thinking we forced, then an answer
        thought = c.text.split("</think>")[0]
        assert c.forced and c.thinking_tokens == 10 and c.completion_tokens == 10 + c.answer_tokens
        assert len(tok.encode(thought, add_special_tokens=False)) == 10 and p.text.startswith(thought)
        assert p.thinking_tokens > 10
    extended = 0
    for p, w in zip(plain, waited, strict=True):
        # Wait-extension: where the student ended its thinking, "Wait" is appended instead and it goes on
        assert w.text.startswith(p.text.split("</think>")[0] + "Wait")
        assert 1 <= w.waits <= 2 and w.text.count("Wait") == w.waits
        assert w.thinking_tokens >= p.thinking_tokens  # its own thinking, minus the delimiter, plus more
        extended += w.waits == 2 and w.ended_thinking
    assert extended >= 1  # at least one went through both extensions and then answered


def test_several_eval_sets_are_scored_together_and_per_set(tmp_path: Path) -> None:
    """eval.source as a list (s1: AIME24, MATH500, GPQA): one block, and by_source per set."""
    from tracesynth.sim import SimTeacher
    from tracesynth.sources.builtin import get, verified_path

    key = tmp_path / "key.jsonl"
    with key.open("w") as out:
        for name in ("gsm8k", "math500"):
            with verified_path(get(name, "test")).open() as src:
                out.write("".join(next(src) for _ in range(20)))
    with SimTeacher(answer_key=key, seed=1) as sim:
        recipe = load_recipe(
            None,
            [
                f"run_dir={tmp_path / 'run'}",
                "eval.source=[{kind: builtin, name: gsm8k, split: test, limit: 12}, "
                "{kind: builtin, name: math500, split: test, limit: 8}]",
                "eval.backend=endpoint",
                f"eval.base_url={sim.base_url}",
                "eval.model=sim-student",
                "eval.api_key_env=null",
                "eval.max_new_tokens=4096",
            ],
        )
        block = evaluate(recipe).blocks["after"]
    assert block["n_problems"] == 20
    by_source = block["by_source"]
    assert {k: v["n_problems"] for k, v in by_source.items()} == {"gsm8k/test": 12, "math500/test": 8}
    assert all(v["pass@1"] > 0.5 for v in by_source.values())
    protocol = json.loads((tmp_path / "run" / "eval.json").read_text())["after"]["protocol"]
    assert [s["name"] for s in protocol["eval_set"]] == ["gsm8k", "math500"]
