"""The run report: report.md + PNG plots in the run folder, and a terminal summary table.

Reads only what the stages wrote (manifest.json, harvest.json, verify.json, curate.json,
dataset card counts, traces.jsonl, train.json, eval.json — for the run and for each variant under
``variants/<name>/``) and the cost receipt from :mod:`tracesynth.accounting.receipt`. A missing stage file is
reported as "not run", never invented. Beyond counting and summing what is recorded, it computes
the summaries of an experiment: students trained with several seeds (variants ``<student>-s<k>``)
are reported as a mean with an interval over seeds and problems, with paired margins
(:mod:`.seeds`); a harvest from the simulated teacher is read against the true traces to show
what verification caught and what it could not (:mod:`.mistakes`); the words around those
numbers are in :mod:`.sections`. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tracesynth.accounting.receipt import Receipt, build_receipt
from tracesynth.stages.report import mistakes, sections
from tracesynth.stages.report.seeds import Group, accuracy, seed_groups


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _eval_runs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """eval.json of the run and of every variant, keyed by variant name ('' for the run)."""
    out: dict[str, dict[str, Any]] = {}
    own = _read_json(run_dir / "eval.json")
    if own:
        out["run"] = own
    vdir = run_dir / "variants"
    if vdir.is_dir():
        order = list((_read_json(run_dir / "recipe.json") or {}).get("variants") or {})  # the recipe's order
        names = sorted(
            (d.name for d in vdir.iterdir() if d.is_dir()),
            key=lambda n: (order.index(n) if n in order else len(order), n),
        )
        for name in names:
            data = _read_json(vdir / name / "eval.json")
            if data:
                out[name] = data
    return out


def _accuracy_rows(evals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, model): the untrained baseline once, then each trained student."""
    rows: list[dict[str, Any]] = []
    seen_before = False
    for name, ev in evals.items():
        before = ev.get("before")
        if before and not seen_before:
            rows.append({"student": "untrained", **_acc(before)})
            seen_before = True
        after = ev.get("after", ev)
        row = {"student": name, **_acc(after)}
        greedy = next(
            (b for b in (ev.get("models") or {}).values() if (b.get("protocol") or {}).get("temperature") == 0), None
        )
        if greedy is not None and (after.get("protocol") or {}).get("temperature") != 0:
            row["greedy"] = greedy.get("pass@1")
        rows.append(row)
    return rows


def _acc(block: dict[str, Any]) -> dict[str, Any]:
    ci = block.get("ci") or block.get("pass@1_ci") or [None, None]
    return {
        "pass@1": block.get("pass@1"),
        "ci_low": ci[0],
        "ci_high": ci[1],
        "n_problems": block.get("n_problems"),
        "stop_rate": block.get("stop_rate"),
    }


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "–"
    if pct:
        return f"{100 * x:.1f}%"
    if isinstance(x, float):
        return f"{x:,.4g}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def build_report(run_dir: str | Path, *, plots: bool = True) -> Path:
    """Write ``report.md`` (and ``plots/*.png``) for a run folder; return the report's path."""
    run = Path(run_dir)
    manifest = _read_json(run / "manifest.json") or {}
    harvest = _read_json(run / "harvest.json")
    verify = _read_json(run / "verify.json")
    evals = _eval_runs(run)
    receipt = build_receipt(run)
    md: list[str] = [f"# tracesynth report: {manifest.get('name', run.name)}", ""]
    if manifest.get("recipe_hash"):
        md.append(
            f"Recipe hash `{manifest['recipe_hash']}`; versions: "
            + ", ".join(f"{k} {v}" for k, v in sorted(manifest.get("versions", {}).items()))
        )
        md.append("")

    md += ["## Funnel", "", _funnel_table(run, harvest, verify), ""]
    stages = manifest.get("stages", {})
    if stages:
        rows = [
            [name, _fmt(info.get("wall_s"))]
            for name, info in stages.items()
            if isinstance(info, dict) and info.get("wall_s") is not None
        ]
        total = sum(float(info["wall_s"]) for info in stages.values() if isinstance(info, dict) and info.get("wall_s"))
        elapsed = manifest.get("run_wall_s")
        workers = manifest.get("variant_workers") or 1
        if rows:
            rows.append(["sum of the stages", f"{total:,.1f}"])
        if elapsed:
            rows.append(
                ["**elapsed** (`tracesynth run`, report excluded)", f"**{elapsed:,.1f}** ({elapsed / 60:.1f} min)"]
            )
        md += ["## Wall time per stage (s)", "", _table(["stage", "wall s"], rows), ""]
        if workers > 1:
            md += [
                f"The variants ran {workers} at a time in worker processes "
                f"({manifest.get('variant_threads', 1)} CPU thread each), so the stages add up to more than the "
                "elapsed time.",
                "",
            ]
    if verify:
        md += ["## Verdicts", "", _verdict_table(verify), ""]
    groups = seed_groups(run)
    sim = mistakes.simulated(run)
    caught, trained, written = _mistake_counts(run, groups) if sim is not None else (None, [], [])
    md += sections.verification_section(caught, trained, written, mistakes.KIND_WORDS, mistakes.ORDER)
    results, found = sections.results_section(groups)
    md += results
    md += sections.shows_section(groups, found, sim, caught, trained, _task(run), written)
    acc = _accuracy_rows(evals)
    if acc:
        with_greedy = any(r.get("greedy") is not None for r in acc)
        md += ["## Student accuracy (held out)" + (", per training run" if groups else ""), ""]
        md.append(
            _table(
                [
                    "student",
                    "pass@1",
                    "95% CI",
                    *(["greedy pass@1"] if with_greedy else []),
                    "problems",
                    "stopped before max tokens",
                ],
                [
                    [
                        r["student"],
                        _fmt(r["pass@1"], True),
                        f"[{_fmt(r['ci_low'], True)}, {_fmt(r['ci_high'], True)}]",
                        *([_fmt(r.get("greedy"), True)] if with_greedy else []),
                        _fmt(r["n_problems"]),
                        _fmt(r["stop_rate"], True),
                    ]
                    for r in acc
                ],
            )
        )
        md.append("")
        if not groups:
            md += _margins(run, acc)
    cap_rows = _cap_rows(evals)
    md += sections.thinking_caps_section(cap_rows)
    md += ["## Cost receipt", "", receipt.markdown(), ""]
    if plots:
        names = _plots(run, harvest, verify, acc, cap_rows, groups)
        if names:
            md += ["## Plots", ""] + [f"![{n}](plots/{n})" for n in names] + [""]
    out = run / "report.md"
    out.write_text("\n".join(md))
    return out


def _funnel_table(run: Path, harvest: dict[str, Any] | None, verify: dict[str, Any] | None) -> str:
    rows: list[list[Any]] = []
    if harvest:
        src = harvest.get("source") or {}
        counts = harvest.get("counts") or {}
        rows.append(["source", "rows read", _fmt(src.get("rows"))])
        for key, n in sorted(src.items()):
            if key.startswith("drop:"):
                rows.append(["source", f"dropped ({key[5:]})", _fmt(n)])
        decontam = harvest.get("decontam") or {}
        if decontam.get("removed_count") is not None:
            rows.append(["source", "dropped (decontamination before harvest)", _fmt(decontam["removed_count"])])
        rows.append(["harvest", "problems asked", _fmt(counts.get("problems", harvest.get("problems")))])
        rows.append(["harvest", "samples done", _fmt(counts.get("done_total", harvest.get("done")))])
        for key in ("truncated", "failed", "gave_up", "pending"):
            rows.append(["harvest", f"samples {key.replace('_', ' ')}", _fmt(counts.get(key, harvest.get(key)))])
        for kind, n in sorted((harvest.get("retries_by_kind") or {}).items()):
            rows.append(["harvest", f"retried ({kind})", _fmt(n)])
        for kind, n in sorted((harvest.get("errors_by_kind") or {}).items()):
            rows.append(["harvest", f"item errors ({kind})", _fmt(n)])
    if verify:
        rows.append(["verify", "samples verified", _fmt(verify.get("samples"))])
        rows.append(["verify", f"samples kept (policy: {verify.get('keep')})", _fmt(verify.get("kept"))])
    # variants whose curation came out the same (the seeds of one student) share their rows
    scopes: dict[str, list[str]] = {}
    cells: dict[str, list[list[Any]]] = {}
    folders = [("", run)] + [(d.name, d) for d in sorted((run / "variants").glob("*")) if d.is_dir()]
    for name, folder in folders:
        data = _read_json(folder / "curate.json") or {}
        steps = []
        for step in data.get("steps", []):
            dropped = ", ".join(f"{k}: {v}" for k, v in sorted((step.get("dropped") or {}).items()))
            counts = f"{_fmt(step.get('in'))} → {_fmt(step.get('out'))}" + (f" ({dropped})" if dropped else "")
            steps.append([step.get("step"), counts])
        if steps:
            key = json.dumps(steps)
            scopes.setdefault(key, []).append(name)
            cells[key] = steps
    for key, names in scopes.items():
        scope = "curate" if names == [""] else "curate[" + _compact(names) + "]"
        rows += [[scope, *cell] for cell in cells[key]]
    return _table(["stage", "what", "n"], rows) if rows else "_no stage has run yet_"


def _task(run: Path) -> str:
    """The training problems in a few words, from the recipe's source (for the report's plain-words paragraph)."""
    source = (_read_json(run / "recipe.json") or {}).get("source") or {}
    if isinstance(source, list):
        return "a mix of problem sources"
    name = source.get("name") or source.get("path") or source.get("kind") or "the recipe's problems"
    cfg = source.get("config") or {}
    words = f"{name} problems"
    lo, hi = cfg.get("min_digits"), cfg.get("max_digits")
    if lo and lo == hi:
        ops = "".join(cfg.get("operators") or [])
        words = f"{name} with {lo}-digit terms" + (f" ({' '.join(ops)} only)" if ops else "")
    return words


def _compact(names: list[str]) -> str:
    """Variant names with the seeds of one student folded: ``verified-s1/2/3``."""
    from tracesynth.stages.report.seeds import SEED_NAME

    groups: dict[str, list[str]] = {}
    for n in names:
        m = SEED_NAME.match(n)
        groups.setdefault(m.group("group") if m else n or "run", []).append(m.group("seed") if m else "")
    return ", ".join(g if seeds == [""] else f"{g}-s{'/'.join(seeds)}" for g, seeds in groups.items())


def _verdict_table(verify: dict[str, Any]) -> str:
    rows = []
    tags = verify.get("tags") or {}
    for name, counts in sorted((verify.get("counts") or {}).items()):
        total = sum(counts.get(s, 0) for s in ("pass", "fail", "unverifiable")) or 1
        rows.append(
            [
                name,
                counts.get("pass", 0),
                counts.get("fail", 0),
                counts.get("unverifiable", 0),
                _fmt(counts.get("pass", 0) / total, True),
                ", ".join(f"{t}: {n}" for t, n in sorted((tags.get(name) or {}).items())),
            ]
        )
    return _table(["verifier", "pass", "fail", "unverifiable", "pass rate", "non-pass tags"], rows)


def _per_problem(path: Path) -> dict[str, float]:
    """Mean pass over the samples of each problem, for the trained student's plain (unforced) answers."""
    sums: dict[str, list[float]] = {}
    if not path.exists():
        return {}
    with path.open() as fh:
        for line in fh:
            if not line.endswith("\n"):
                continue
            row = json.loads(line)
            if row.get("label") == "after" and row.get("mode", "plain") == "plain":
                sums.setdefault(row["problem_id"], []).append(1.0 if row.get("passed") else 0.0)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def _margins(run: Path, acc: list[dict[str, Any]]) -> list[str]:
    """First trained student minus each other one, with a 95% CI.

    The students answer the same held-out problems, so the difference is paired by problem (mean of
    per-problem differences, normal interval over problems); without item files it falls back to
    the unpaired normal approximation.
    """
    trained = [r for r in acc if r["student"] != "untrained" and r["pass@1"] is not None and r["n_problems"]]
    if len(trained) < 2:
        return []
    a = trained[0]
    items_a = _per_problem(run / "variants" / a["student"] / "eval_items.jsonl")
    out = []
    for b in trained[1:]:
        items_b = _per_problem(run / "variants" / b["student"] / "eval_items.jsonl")
        common = sorted(set(items_a) & set(items_b))
        if len(common) > 1:
            diffs = [items_a[k] - items_b[k] for k in common]
            diff = sum(diffs) / len(diffs)
            var = sum((d - diff) ** 2 for d in diffs) / (len(diffs) - 1)
            se, how = (var / len(diffs)) ** 0.5, f"paired over {len(common)} problems"
        else:
            diff = a["pass@1"] - b["pass@1"]
            var_a = a["pass@1"] * (1 - a["pass@1"]) / a["n_problems"]
            var_b = b["pass@1"] * (1 - b["pass@1"]) / b["n_problems"]
            se, how = (var_a + var_b) ** 0.5, "unpaired"
        out.append(
            f"- {a['student']} − {b['student']}: {100 * diff:+.1f} points "
            f"(95% CI [{100 * (diff - 1.96 * se):+.1f}, {100 * (diff + 1.96 * se):+.1f}], {how})"
        )
    return [*out, ""]


def _cap_rows(evals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Budget-forcing rows of every student that has them, each after its uncapped row (``cap`` None)."""
    rows: list[dict[str, Any]] = []

    def row(name: str, cap: Any, b: dict[str, Any]) -> dict[str, Any]:
        thinking, completion = b.get("mean_thinking_tokens"), b.get("mean_completion_tokens")
        answer = completion - thinking if thinking is not None and completion is not None else None
        return {
            "student": name,
            "cap": cap,
            "pass@1": b.get("pass@1"),
            "forced_rate": b.get("forced_rate"),
            "thinking": thinking,
            "answer": answer,
        }

    for name, ev in evals.items():
        block = ev.get("after", ev)
        caps = block.get("thinking_caps") or []
        if caps:
            rows.append(row(name, None, block))
        rows += [row(name, item.get("thinking_tokens"), item) for item in caps]
    return rows


def _mistake_counts(run: Path, groups: list[Group]) -> tuple[Any, list[tuple[str, Any, bool]], list[tuple[str, Any]]]:
    """What verification caught in the harvest, what each group trained on, what each group writes."""
    from collections import Counter

    caught = mistakes.harvest_table(run)
    trained: list[tuple[str, Any, bool]] = []
    written: list[tuple[str, Any]] = []
    for g in groups:
        first = run / "variants" / g.runs[0].name
        recipe = _read_json(first / "recipe.json") or {}
        reasoning = (recipe.get("dataset") or {}).get("reasoning") != "none"
        kinds = mistakes.trace_kinds(first / "traces.jsonl")
        if kinds and not any(t[1] == kinds and t[2] == reasoning for t in trained):
            trained.append((g.name, kinds, reasoning))
        total: Counter[str] = Counter()
        for r in g.runs:
            total += mistakes.answer_kinds(run / "variants" / r.name / "eval_items.jsonl")
        if total and set(total) != {"not_arithmetic"}:
            written.append((g.name, total))
    return caught, trained, written


def _plots(
    run: Path,
    harvest: dict[str, Any] | None,
    verify: dict[str, Any] | None,
    acc: list[dict[str, Any]],
    cap_rows: list[dict[str, Any]],
    groups: list[Group],
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tracesynth.stages.report.plots import draw_all

    out = run / "plots"
    out.mkdir(exist_ok=True)
    names = draw_all(plt, out, run, harvest, verify, acc, cap_rows, groups)
    plt.close("all")
    return names


def summary_rows(run_dir: str | Path) -> list[tuple[str, str]]:
    """Key numbers for the terminal table printed at the end of `tracesynth run`."""
    run = Path(run_dir)
    harvest = _read_json(run / "harvest.json") or {}
    counts = harvest.get("counts") or {}
    receipt: Receipt = build_receipt(run)
    rows = [
        ("samples done / failed", f"{_fmt(counts.get('done_total'))} / {_fmt(counts.get('failed'))}"),
    ]
    groups = seed_groups(run)
    if groups:
        for g in groups:
            for key in g.eval_keys():
                e = accuracy(g, key)
                if e is not None:
                    what = "greedy" if key != "after" else "pass@1"
                    rows.append(
                        (
                            f"{what} {g.name} ({len(e.per_seed)} seeds)",
                            f"{_fmt(e.mean, True)} [{_fmt(max(e.low, 0.0), True)}, {_fmt(min(e.high, 1.0), True)}]",
                        )
                    )
    else:
        for r in _accuracy_rows(_eval_runs(run)):
            rows.append(
                (
                    f"pass@1 {r['student']}",
                    f"{_fmt(r['pass@1'], True)} [{_fmt(r['ci_low'], True)}, {_fmt(r['ci_high'], True)}]",
                )
            )
    rows.append(("total cost (USD)", f"{receipt.total_usd:.4f}"))
    rows.append(("report", str(run / "report.md")))
    return rows
