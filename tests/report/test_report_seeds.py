"""The report of an experiment, on a small fabricated run folder (no training, no generation: fast).

Two students × three seeds, a harvest from the simulated teacher with planted mistakes, greedy and
sampled evaluations, a loss curve and budget-forcing rows: the report must group the seeds, give
means with t intervals over seeds, paired margins, what verification caught and missed, the
thinking-cap explanation and "what this shows / does not", and count axes that start at 0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tracesynth.sim.solver import Solver
from tracesynth.stages.report import build_report
from tracesynth.stages.report.seeds import accuracy, loss_summary, margin, seed_groups, t95

PROBLEMS = [f"Calculate {a} + {b}." for a, b in [(47, 38), (12, 30), (55, 66), (91, 19), (23, 45), (70, 8)]]
SEEDS = (1, 2, 3)
# per student, per seed: which of the 6 problems pass (sampled: 2 samples per problem; greedy: one)
SAMPLED = {
    "good": {1: [2, 2, 2, 1, 2, 2], 2: [2, 2, 1, 2, 2, 2], 3: [2, 2, 2, 2, 2, 1]},
    "bad": {1: [1, 0, 1, 1, 0, 1], 2: [0, 1, 1, 0, 1, 1], 3: [1, 1, 0, 1, 0, 0]},
}
GREEDY = {
    "good": {1: [1, 1, 1, 1, 1, 1], 2: [1, 1, 1, 1, 1, 0], 3: [1, 1, 1, 1, 1, 1]},
    "bad": {1: [1, 0, 1, 1, 1, 1], 2: [1, 1, 1, 0, 1, 1], 3: [1, 1, 0, 1, 1, 0]},
}


def write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_lines(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def block(temperature: float, n: int, passes: list[int], caps=None) -> dict:
    out = {
        "protocol": {"temperature": temperature, "n": n},
        "pass@1": sum(passes) / (n * len(passes)),
        "ci": [0.0, 1.0],
        "n_problems": len(passes),
        "stop_rate": 1.0,
        "mean_thinking_tokens": 110.0,
        "mean_completion_tokens": 122.0,
    }
    if caps:
        out["thinking_caps"] = caps
    return out


def cap(tokens: int, p: float, answer: float, forced: float) -> dict:
    return {
        "mode": "cap",
        "thinking_cap": tokens,
        "thinking_tokens": tokens,
        "pass@1": p,
        "forced_rate": forced,
        "mean_thinking_tokens": float(min(tokens, 110)),
        "mean_completion_tokens": float(min(tokens, 110)) + answer,
    }


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    variants = {f"{s}-s{k}": {"sft.seed": k} for s in ("good", "bad") for k in SEEDS}
    sim = {"enabled": True, "options": {"wrong_rate": 0.25, "slip_rate": 0.15, "mistakes": ["step", "transposed"]}}
    write(run / "recipe.json", {"name": "fab", "variants": variants, "teacher": {"sim": sim}})
    write(
        run / "manifest.json",
        {"name": "fab", "stages": {"sft": {"wall_s": 100.0}, "eval": {"wall_s": 20.0}}, "run_wall_s": 70.0},
    )
    write(
        run / "harvest.json",
        {"counts": {"problems": 60, "done_total": 60}, "timeline": [{"t": 0}, {"t": 1, "done": 60}]},
    )
    # a harvest with every kind planted: 24 clean, 12 slips, 12 + 12 wrong (two solvers, same problems)
    samples, verdicts = [], []
    kinds = [("none", Solver(seed=1)), ("slip", Solver(seed=1, slip_rate=1.0))]
    kinds += [
        ("step", Solver(seed=1, wrong_rate=1.0)),
        ("transposed", Solver(seed=1, wrong_rate=1.0, mistakes=["transposed"])),
    ]
    for kind, solver in kinds:
        for i, q in enumerate(PROBLEMS * (4 if kind == "none" else 2)):
            sol = solver.solve(q, (None, i))
            sid = f"{kind}-{i}"
            samples.append({"id": sid, "reasoning": sol.reasoning, "content": sol.content, "finish_reason": "stop"})
            verdicts.append({"sample_id": sid, "verifier": "math", "status": "fail" if sol.wrong else "pass"})
    write_lines(run / "samples.jsonl", samples)
    write_lines(run / "verdicts.jsonl", verdicts)
    clean = Solver()
    for student in ("good", "bad"):
        for k in SEEDS:
            v = run / "variants" / f"{student}-s{k}"
            write(v / "recipe.json", {"sft": {"seed": k}, "dataset": {"reasoning": "think_tags"}})
            steps = 100
            write(
                v / "student" / "train.json",
                {
                    "steps": steps,
                    "tokens_seen": 160_000,
                    "params": 150_000,
                    "examples": 1000,
                    "loss_tokens_per_epoch": 120_000,
                    "wall_s": 50.0,
                    "world_size": 1,
                    "sft_args": {"per_device_train_batch_size": 16},
                },
            )
            history = [{"step": s, "loss": 2.0 / s} for s in range(10, steps + 1, 10)]
            write(
                v / "student" / "checkpoints" / f"checkpoint-{steps}" / "trainer_state.json", {"log_history": history}
            )
            caps = (
                [cap(32, 0.3, 80, 1.0), cap(64, 0.05, 50, 1.0), cap(128, 0.9, 12, 0.1)]
                if (student, k) == ("good", 1)
                else None
            )
            write(
                v / "eval.json",
                {
                    "after": block(0.6, 2, SAMPLED[student][k], caps),
                    "models": {"greedy": block(0.0, 1, GREEDY[student][k])},
                },
            )
            items = []
            for label, table, n in (("after", SAMPLED, 2), ("greedy", GREEDY, 1)):
                for p, passes in enumerate(table[student][k]):
                    sol = clean.solve(PROBLEMS[p])
                    for j in range(n):
                        ok = j < passes
                        items.append(
                            {
                                "label": label,
                                "mode": "plain",
                                "problem_id": f"p{p}",
                                "passed": ok,
                                "reasoning": sol.reasoning,
                                "content": sol.content if ok else "The answer is \\boxed{0}.",
                            }
                        )
            write_lines(v / "eval_items.jsonl", items)
            traces = samples[:24] + samples[24:36] + ([] if student == "good" else samples[36:])
            write_lines(v / "traces.jsonl", traces)
    return run


def seed_means(table: dict[int, list[int]], n: int) -> list[float]:
    return [sum(table[k]) / (n * len(table[k])) for k in SEEDS]


def test_groups_means_and_intervals_over_seeds(run):
    groups = seed_groups(run)
    assert [g.name for g in groups] == ["good", "bad"] and groups[0].seeds == [1, 2, 3]
    good = groups[0]
    e = accuracy(good, "after")
    per_seed = seed_means(SAMPLED["good"], 2)
    assert e.per_seed == pytest.approx(per_seed)
    mean = sum(per_seed) / 3
    var_seeds = sum((x - mean) ** 2 for x in per_seed) / 2 / 3
    per_problem = [sum(SAMPLED["good"][k][p] / 2 for k in SEEDS) / 3 for p in range(6)]
    pm = sum(per_problem) / 6
    var_problems = sum((x - pm) ** 2 for x in per_problem) / 5 / 6
    half = 4.303 * math.sqrt(var_seeds + var_problems)
    assert (e.mean, e.low, e.high) == pytest.approx((mean, mean - half, mean + half))
    assert t95(2) == 4.303 and t95(1000) == pytest.approx(1.96, abs=1e-3)
    m = margin(groups[0], groups[1], "greedy")
    diffs = [a - b for a, b in zip(seed_means(GREEDY["good"], 1), seed_means(GREEDY["bad"], 1), strict=True)]
    assert m.per_seed == pytest.approx(diffs)
    assert m.low < m.mean < m.high
    loss = loss_summary(good.runs[0])
    assert loss["final"] == pytest.approx((2 / 80 + 2 / 90 + 2 / 100) / 3) and loss["change"] < 0
    assert good.runs[0].supervised_tokens == 100 * 16 * 120
    assert good.runs[0].flops == 6 * 150_000 * 160_000


def test_report_has_the_experiment_sections(run):
    report = build_report(run, plots=True).read_text()
    for section in (
        "## What verification catches and what it does not",
        "## Results over seeds (3 per student)",
        "### Training",
        "### Held-out accuracy",
        "### Margins",
        "## What this shows, and what it does not",
        "## Accuracy vs thinking tokens (budget forcing)",
        "## Student accuracy (held out), per training run",
    ):
        assert section in report, section
    assert "| sampled T=0.6, 2/problem pass@1 (95% CI) | per seed | greedy pass@1 (95% CI) | per seed |" in report
    assert "| good − bad |" in report and "t over 3 seeds" in report
    # verification: every wrong answer caught, every recovered slip passed
    assert "| nothing wrong | 24 | 0 | 24 |" in report
    assert "| a slip noticed and corrected mid-trace, right answer | 12 | 0 | 12 |" in report
    assert "12 | 12 | 0 |" in report  # step mistakes: all failed verification
    assert "caught 24 of the 24 wrong answers" in report and "passed all 12 recovered slips" in report
    assert "| good | 36 | 33.3% | 0.0% |" in report  # trained on: a third hold a slip, none a wrong answer
    assert "no claim about real LLMs" in report
    # budget forcing explained from the numbers: uncapped length, the non-monotonic cut
    assert "uncapped, its traces are 110 thinking tokens long" in report
    assert "not monotonic because of where the cut falls" in report
    assert "**elapsed** (`tracesynth run`, report excluded) | **70.0**" in report
    plots = {p.name for p in (run / "plots").glob("*.png")}
    assert {"accuracy.png", "loss.png", "thinking_caps.png", "harvest.png"} <= plots


def test_count_axes_start_at_zero_with_integer_ticks(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tracesynth.stages.report import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, out, name: figs.append(fig) or name)
    timeline = [{"t": t, "done": 10 * t, "errors": 0} for t in range(5)]
    assert plots._throughput(plt, tmp_path, {"timeline": timeline}) == "harvest.png"
    errors_axis = figs[-1].axes[1]
    low, high = errors_axis.get_ylim()
    assert low == 0 and 1 <= high < 2  # no errors: 0 to 1, never -0.04..0.04
    ticks = [t for t in errors_axis.get_yticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks)
    timeline[-1]["errors"] = 7
    plots._throughput(plt, tmp_path, {"timeline": timeline})
    low, high = figs[-1].axes[1].get_ylim()
    assert low == 0 and high >= 7
    plt.close("all")


def test_a_run_without_seeds_keeps_the_old_margins(tmp_path):
    run = tmp_path / "plain"
    write(run / "recipe.json", {"variants": {"a": {}, "b": {}}})
    for name, passes in (("a", [1, 1, 1, 0]), ("b", [0, 1, 0, 0])):
        write(run / "variants" / name / "eval.json", {"after": block(0.0, 1, passes)})
        write_lines(
            run / "variants" / name / "eval_items.jsonl",
            [{"label": "after", "problem_id": f"p{i}", "passed": bool(x)} for i, x in enumerate(passes)],
        )
    report = build_report(run, plots=False).read_text()
    assert "## Results over seeds" not in report and "- a − b: +50.0 points" in report
