"""The report sections for experiments: results over seeds, what verification caught, budget forcing read.

Each function returns markdown lines (empty when the run has nothing for it) from what
:mod:`.seeds` and :mod:`.mistakes` read; the words say what the numbers are and, in "What this
shows / what it does not", what they do and do not support. Nothing here reads a file itself.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from tracesynth.stages.report.seeds import Estimate, Group, accuracy, eval_label, loss_summary, margin


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _ci(e: Estimate | None, points: bool = False) -> str:
    if e is None:
        return "–"
    if points:
        return f"**{_pts(e.mean)}** [{_pts(e.low)}, {_pts(e.high)}]"
    return f"**{_pct(e.mean)}** [{100 * max(e.low, 0):.1f}, {100 * min(e.high, 1):.1f}]"


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1e6:
        return f"{x / 1e6:,.2f}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:,.0f}k"
    return f"{x:,.{digits}g}"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def eval_keys(groups: list[Group]) -> list[str]:
    keys: list[str] = []
    for g in groups:
        keys += [k for k in g.eval_keys() if k not in keys]
    return keys


def _key_names(groups: list[Group], keys: list[str]) -> dict[str, str]:
    names = {}
    for key in keys:
        block = next((r.blocks[key] for g in groups for r in g.runs if key in r.blocks), {})
        names[key] = eval_label(block, key)
    return names


def training_table(groups: list[Group]) -> list[str]:
    """Per group: steps, tokens, supervised tokens, FLOPs, wall time and the loss at the end (means over seeds)."""
    rows = []
    for g in groups:
        runs = [r for r in g.runs if r.train]
        if not runs:
            continue
        losses = [s for s in (loss_summary(r) for r in runs) if s]
        steps = sorted({int(r.train.get("steps", 0)) for r in runs})
        sup = [x for x in (r.supervised_tokens for r in runs) if x is not None]
        flops = [x for x in (r.flops for r in runs) if x is not None]
        rows.append(
            [
                g.name,
                g.setting(),
                len(runs),
                "/".join(f"{s:,}" for s in steps),
                _num(_mean([float(r.train.get("tokens_seen", 0)) for r in runs])),
                _num(_mean(sup)),
                "–" if not flops else f"{(_mean(flops) or 0) / 1e12:.2f}",
                f"{_mean([float(r.train.get('wall_s', 0)) for r in runs]) or 0:.0f}",
                "–" if not losses else f"{_mean([s['final'] for s in losses]):.3f}",
                "–" if not losses else f"{100 * (_mean([s['relative'] for s in losses]) or 0):+.1f}%",
            ]
        )
    if not rows:
        return []
    return [
        *_table(
            [
                "student",
                "setting",
                "seeds",
                "steps",
                "training tokens",
                "supervised tokens",
                "TFLOPs",
                "train s",
                "final loss",
                "loss change, last 25% of steps",
            ],
            rows,
        ),
        "",
        "Means over seeds. Training tokens are prompt + answer tokens processed (padding excluded); supervised "
        "tokens carried the loss (steps × batch × loss tokens per example); FLOPs = 6 × parameters × training "
        "tokens. The last column is the least-squares change of the logged loss over the last quarter of the "
        "steps, relative to its start: near 0 means flat — but the learning rate decays to 0 on a cosine, so a "
        "flat end is also what any run looks like; compare the final loss of the same student at more steps.",
        "",
    ]


def accuracy_table(groups: list[Group], keys: list[str]) -> list[str]:
    names = _key_names(groups, keys)
    headers = ["student", "setting"]
    for k in keys:
        headers += [f"{names[k]} pass@1 (95% CI)", "per seed"]
    rows = []
    for g in groups:
        row: list[Any] = [g.name, g.setting()]
        for k in keys:
            e = accuracy(g, k)
            row += [_ci(e), "–" if e is None else " / ".join(f"{100 * x:.1f}" for x in e.per_seed)]
        rows.append(row)
    return [*_table(headers, rows), ""]


def margins_table(groups: list[Group], keys: list[str]) -> tuple[list[str], dict[tuple[str, str], Estimate]]:
    """First group minus each other group, per evaluation; and the estimates by (other group, key)."""
    if len(groups) < 2:
        return [], {}
    names = _key_names(groups, keys)
    first = groups[0]
    found: dict[tuple[str, str], Estimate] = {}
    rows = []
    for other in groups[1:]:
        row: list[Any] = [f"{first.name} − {other.name}"]
        for k in keys:
            e = margin(first, other, k)
            if e is not None:
                found[(other.name, k)] = e
            row += [_ci(e, points=True), "–" if e is None else " / ".join(_pts(x) for x in e.per_seed)]
        rows.append(row)
    headers = ["margin (points)"]
    for k in keys:
        headers += [f"{names[k]} (95% CI)", "per seed"]
    note = next((e.how for e in found.values()), "")
    return [
        *_table(headers, rows),
        "",
        f"Paired by problem within each seed (seed k of one student against seed k of the other), then over "
        f"seeds ({note}).",
        "",
    ], found


def results_section(groups: list[Group]) -> tuple[list[str], dict[tuple[str, str], Estimate]]:
    if not groups:
        return [], {}
    keys = eval_keys(groups)
    k = max(len(g.runs) for g in groups)
    md = [
        f"## Results over seeds ({k} per student)",
        "",
        "Every student was trained once per seed (the seed sets its initial weights and the order of its "
        "training data). Accuracy is the mean over seeds; the 95% interval is Student's t over the seeds of a "
        "standard error that adds the seed-to-seed variance and the problem-level variance, so it covers what a "
        "re-run with other seeds, threads or hardware moves, and that the held-out problems are a sample.",
        "",
        "### Training",
        "",
        *training_table(groups),
        "### Held-out accuracy",
        "",
        *accuracy_table(groups, keys),
    ]
    margins, found = margins_table(groups, keys)
    if margins:
        md += ["### Margins", "", *margins]
    return md, found


def verification_section(
    harvest: dict[str, Counter[str]] | None,
    trained: list[tuple[str, Counter[str], bool]],
    answers: list[tuple[str, Counter[str]]],
    words: dict[str, str],
    order: tuple[str, ...],
) -> list[str]:
    """What the teacher planted against what verification did; what each student was trained on and writes."""
    if not harvest:
        return []
    rows = []
    for kind in [k for k in order if k in harvest]:
        c = harvest[kind]
        rows.append([words.get(kind, kind), f"{sum(c.values()):,}", f"{c['fail']:,}", f"{c['pass']:,}"])
    md = [
        "## What verification catches and what it does not",
        "",
        "Every complete sample of the harvest read against the true trace of its problem "
        "(`tracesynth.sim.solver.audit`), beside what the verifiers said of it:",
        "",
        *_table(["what the teacher's answer holds", "samples", "failed verification", "passed verification"], rows),
        "",
    ]
    wrong = sum(sum(harvest[k].values()) for k in ("step", "transposed", "wrong") if k in harvest)
    caught = sum(harvest[k]["fail"] for k in ("step", "transposed", "wrong") if k in harvest)
    slips = harvest.get("slip", Counter())
    md.append(
        f"Outcome verification compares the final answer with the reference: it caught {caught:,} of the "
        f"{wrong:,} wrong answers, however plausible they looked, and passed all {slips['pass']:,} "
        "recovered slips it was shown — a wrong step in the middle of the trace is invisible to it when the "
        "answer comes out right."
        if wrong or slips
        else "Nothing was planted in this harvest."
    )
    md.append("")
    if trained:
        rows = []
        for name, c, reasoning in trained:
            n = sum(c.values()) or 1
            bad = sum(c[k] for k in ("step", "transposed", "wrong"))
            rows.append(
                [
                    name,
                    f"{sum(c.values()):,}",
                    _pct(c["slip"] / n) + ("" if reasoning else " (dropped: answers only)"),
                    _pct(bad / n),
                ]
            )
        md += [
            "What each student was trained on (the kept traces of its first seed):",
            "",
            *_table(["student", "traces", "hold a recovered slip", "hold a wrong answer"], rows),
            "",
        ]
    if answers:
        kinds = [k for k in order if k in ("clean", "slip", "step", "transposed") or any(c[k] for _, c in answers)]
        rows = []
        for name, c in answers:
            n = sum(c.values()) or 1
            rows.append([name, f"{sum(c.values()):,}", *(_pct(c[k] / n) for k in kinds)])
        md += [
            "What the students write on the held-out problems (sampled answers of every seed, read the same way):",
            "",
            *_table(["student", "answers", *(words.get(k, k) for k in kinds)], rows),
            "",
        ]
    return md


def thinking_caps_section(cap_rows: list[dict[str, Any]]) -> list[str]:
    """The budget-forcing table with the numbers that explain its shape."""
    if not cap_rows:
        return []
    rows = []
    for r in cap_rows:
        rows.append(
            [
                r["student"],
                r["cap"] if r["cap"] is not None else "none",
                _pct(r["pass@1"]),
                "–" if r.get("forced_rate") is None else _pct(r["forced_rate"]),
                "–" if r.get("thinking") is None else f"{r['thinking']:.0f}",
                "–" if r.get("answer") is None else f"{r['answer']:.0f}",
            ]
        )
    md = [
        "## Accuracy vs thinking tokens (budget forcing)",
        "",
        *_table(
            [
                "student",
                "thinking cap (tokens)",
                "pass@1",
                "thinking cut by the cap",
                "mean thinking tokens",
                "mean answer tokens",
            ],
            rows,
        ),
        "",
    ]
    for student in dict.fromkeys(r["student"] for r in cap_rows):
        mine = [r for r in cap_rows if r["student"] == student]
        free = next((r for r in mine if r["cap"] is None), None)
        capped = sorted((r for r in mine if r["cap"] is not None), key=lambda r: r["cap"])
        if free is None or not capped or free.get("thinking") is None:
            continue
        length = free["thinking"]
        below = [r for r in capped if r["cap"] < length]
        above = [r for r in capped if r["cap"] >= length]
        text = (
            f"How to read it ({student}): uncapped, its traces are {length:.0f} thinking tokens long and it "
            f"scores {_pct(free['pass@1'])}. "
        )
        if above:
            text += (
                f"A cap at or above that length ({', '.join(str(r['cap']) for r in above)}) rarely cuts "
                f"anything (cut in {_pct(above[0].get('forced_rate'))} of the answers at {above[0]['cap']}) and "
                "scores about the same. "
            )
        if below:
            text += (
                f"A cap below it ({', '.join(str(r['cap']) for r in below)}) cuts every trace, forces the end of "
                "thinking and asks for the answer from a partial trace — something this student never saw: every "
                "trace it was trained on is complete. "
            )
            # a drop of more than 5 points from a shorter cap to a longer one: past sampling noise at these sizes
            drop = next(((a, b) for a, b in itertools.pairwise(below) if b["pass@1"] < a["pass@1"] - 0.05), None)
            if drop is not None:
                low, high = drop
                text += (
                    f"The curve is not monotonic because of where the cut falls, not because of a bug: at "
                    f"{low['cap']} tokens it falls early in the trace and the student goes on working after the "
                    f"forced end of thinking (its answers are {low.get('answer') or 0:.0f} tokens long, against "
                    f"{free.get('answer') or 0:.0f} uncapped), sometimes reaching the right result; at "
                    f"{high['cap']} it falls in the middle of the work and what follows is mostly wrong "
                    f"({high.get('answer') or 0:.0f} answer tokens, {_pct(high['pass@1'])} right). "
                )
            text += (
                "So the curve says this student cannot answer early, which is what a tiny model trained only on "
                "full traces should say; s1's gains from forcing come from models that can."
            )
        md += [text, ""]
    return md


def shows_section(
    groups: list[Group],
    margins: dict[tuple[str, str], Estimate],
    sim: dict[str, Any] | None,
    harvest: dict[str, Counter[str]] | None,
    trained: list[tuple[str, Counter[str], bool]],
    task: str = "this task",
    written: list[tuple[str, Counter[str]]] | None = None,
) -> list[str]:
    """'What this shows / what it does not', in plain words next to the numbers."""
    if len(groups) < 2 or not margins:
        return []
    keys = eval_keys(groups)
    names = _key_names(groups, keys)
    first = groups[0]
    params = next((r.train.get("params") for g in groups for r in g.runs if r.train.get("params")), None)
    k = min(len(g.runs) for g in groups)
    lines = []
    for other in groups[1:]:
        parts = []
        for key in keys:
            e = margins.get((other.name, key))
            if e is None:
                continue
            verdict = (
                "holds: the interval is above 0"
                if e.low > 0
                else "is reversed: the interval is below 0"
                if e.high < 0
                else "is not resolved: the interval includes 0"
            )
            parts.append(f"{names[key]} {_pts(e.mean)} points [{_pts(e.low)}, {_pts(e.high)}], which {verdict}")
        if parts:
            lines.append(f"- {first.name} − {other.name} ({other.setting()}): " + "; ".join(parts) + ".")
    what = []
    if sim is not None:
        wrong, slip = sim.get("wrong_rate", 0), sim.get("slip_rate", 0)
        what.append(
            f"a simulated teacher that plants a wrong final answer in {100 * wrong:.0f}% of its traces "
            f"and a slip it corrects in {100 * slip:.0f}%"
        )
    size = f"a {params / 1e6:.2f}M-parameter student" if params else "a tiny student"
    walls = [float(r.train["wall_s"]) for g in groups for r in g.runs if r.train.get("wall_s")]
    longest = max(walls, default=0.0)
    trained_for = f"{longest / 60:.0f} minutes" if longest >= 90 else f"{longest:.0f} seconds"
    md = [
        "## What this shows, and what it does not",
        "",
        f"**What it shows.** With {size} trained from scratch on {task}"
        + (f", from {what[0]}" if what else "")
        + f", over {k} seeds per student:",
        "",
        *lines,
        "",
    ]
    slip_share = ""
    if trained:
        name, c, _ = trained[0]
        n = sum(c.values())
        if n and c["slip"]:
            slip_share = (
                f" Verification also kept what it cannot see: {100 * c['slip'] / n:.0f}% of the traces {name} "
                "was trained on hold a recovered slip"
            )
            copied = [(g, c["slip"] / n) for g, c in (written or []) if (n := sum(c.values()))]
            slip_share += (
                "; the students write one in "
                + ", ".join(f"{100 * x:.1f}% ({g})" for g, x in copied)
                + " of their sampled answers."
                if copied
                else "."
            )
    caught = ""
    if harvest:
        wrong = sum(sum(harvest[x].values()) for x in ("step", "transposed", "wrong") if x in harvest)
        fails = sum(harvest[x]["fail"] for x in ("step", "transposed", "wrong") if x in harvest)
        if wrong:
            caught = (
                f" Verification here compares each final answer with a known reference, so it caught "
                f"{fails:,} of {wrong:,} planted wrong answers however plausible they looked; how a verifier "
                "without a reference (a judge, a reward model) would fare against them is not measured."
            )
    falling = []
    for g in groups:
        rel = [x["relative"] for x in (loss_summary(r) for r in g.runs) if x]
        if rel and (sum(rel) / len(rel)) < -0.05:
            falling.append(f"{g.name} ({100 * sum(rel) / len(rel):+.0f}%)")
    still = (
        " Still improving when training stopped (training loss change over the last quarter of the steps): "
        + ", ".join(falling)
        + "; for these the accuracy is a floor, not what the student would reach with more training."
        if falling
        else ""
    )
    md += [
        f"**What it does not show.** This is {size} on {task}"
        + (", taught by a simulated teacher whose mistakes are a few planted kinds" if sim is not None else "")
        + f", each run trained for at most {trained_for} on a CPU: it makes no claim about real LLMs, real "
        "teachers, harder tasks or other training budgets, and the margins depend on the decoding (greedy and "
        "sampled differ) and on how long each student trains (equal steps and equal compute differ). The "
        "intervals cover the seeds and the held-out problems of this run, not other tasks, sizes or "
        "hyperparameters." + still + caught + slip_share,
        "",
    ]
    return md


__all__ = [
    "accuracy_table",
    "eval_keys",
    "margins_table",
    "results_section",
    "shows_section",
    "thinking_caps_section",
    "training_table",
    "verification_section",
]
