"""The dataset card (README.md) written next to an exported dataset.

It states where every row came from and what was done to it: teacher, endpoints (base URLs
only — never keys), sampling, prompt template and system prompt, recipe hash; counts through
every stage (harvest.json, verify.json, curate.json); a text histogram of trace lengths; pass
rates; the domain and source mix; decontamination (the eval sets checked and every problem
removed, or a plain statement that it was turned off); the total harvest cost (the run folder's one
spend reader, tracesynth.accounting.spend); and the licence. It reads the run folder and returns text;
it writes nothing and never fails for a missing optional file (it says what is missing).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tracesynth._version import __version__
from tracesynth.accounting.receipt import until_verified_lines
from tracesynth.accounting.spend import scan_spend
from tracesynth.config import Recipe
from tracesynth.records import Trace
from tracesynth.rundir.jsonio import read_json
from tracesynth.rundir.layout import RunLayout
from tracesynth.rundir.store import JsonlFile

_BAR = 40


def render_card(
    recipe: Recipe,
    run_dir: Path,
    template: dict[str, Any],
    *,
    rows: int,
    refused_markup: list[str] | None = None,
    data_files: list[str] | None = None,
) -> str:
    layout = RunLayout(run_dir)
    traces = _trace_stats(layout.traces)
    spend = scan_spend(layout)
    curate = _json(layout.curate_json)
    verify = _json(layout.verify_json)
    harvest = _json(layout.harvest_json)
    licences = _source_licences(recipe)
    size = "n<1K" if rows < 1_000 else "1K<n<10K" if rows < 10_000 else "10K<n<100K" if rows < 100_000 else "n>100K"
    out = [
        "---",
        f"license: {recipe.dataset.license}",
        "task_categories:\n- text-generation",
        "tags:\n- reasoning\n- distillation\n- tracesynth",
        f"size_categories:\n- {size}",
        "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path:\n"
        + "\n".join(f"    - {f}" for f in (data_files or ["data/train-*.parquet"])),
        "---",
        "",
        f"# {recipe.name}: reasoning traces distilled from {', '.join(sorted(traces['teachers'])) or 'a teacher'}",
        "",
        f"{rows} verified chain-of-thought traces built by tracesynth {__version__} on "
        f'{time.strftime("%Y-%m-%d", time.gmtime())}. Load with `datasets.load_dataset("<this folder>")` '
        "(or train on it with `trl sft --dataset_name <this folder>`).",
        "",
        "## Provenance",
        "",
        f"- teacher model(s): {', '.join(sorted(traces['teachers'])) or 'unknown'}",
        f"- endpoints: {', '.join(sorted(traces['endpoints'])) or 'unknown'}"
        + (" (the tracesynth simulated teacher)" if recipe.teacher.sim.enabled else ""),
        f"- sampling: `{json.dumps(recipe.teacher.sampling.model_dump(mode='json'), sort_keys=True)}`, "
        + _samples_per_problem(recipe.teacher),
        f"- prompt template: `{recipe.prompt.template}` (hash `{template['template_hash']}`)",
        f"- system prompt: {_quote(template['system_prompt'])}",
        f"- format: `{template['format']}`, reasoning as `{template['reasoning']}`, thinking delimiters "
        f"`{template['thinking_delimiters'][0]}` … `{template['thinking_delimiters'][1]}` (see template.json)",
        f"- recipe: `{recipe.name}`, hash `{recipe.hash()}`",
        f"- verifiers: {', '.join(recipe.verify.verifiers)} (keep: {recipe.verify.keep}); curation keep policy: "
        f"{recipe.curate.keep}",
        "",
        "## Counts through every stage",
        "",
        *_stage_counts(harvest, verify, curate),
        *(f"- {line}" for line in until_verified_lines((harvest or {}).get("until_verified"))),
        *(
            [
                f"- refused at export: {len(refused_markup)} trace(s) whose text holds chat-template markup "
                f"(it would become special tokens in training): {', '.join(refused_markup[:10])}"
            ]
            if refused_markup
            else []
        ),
        "",
        "## Trace length (tokens)",
        "",
        *_histogram(traces["lengths"], (curate or {}).get("lengths", {}).get("counted_with", "")),
        "",
        "## Pass rates",
        "",
        *_pass_rates(verify, curate),
        "",
        "## Domain and source mix",
        "",
        "| domain | traces |",
        "|---|---|",
        *[f"| {d} | {n} |" for d, n in traces["domains"].most_common()],
        "",
        "| source | traces |",
        "|---|---|",
        *[f"| {s} | {n} |" for s, n in traces["sources"].most_common()],
        "",
        "## Decontamination",
        "",
        *_decontam(recipe, curate),
        "",
        "## Cost",
        "",
        f"- total harvest cost: **${spend.spent_usd:.4f}** — answered calls "
        f"${spend.complete_usd + spend.truncated_usd:.4f} ({spend.samples} calls, "
        f"{spend.truncated} cut at max_tokens), "
        f"failed calls ${spend.failed_usd:.4f} ({spend.failure_rows} calls)"
        + (
            f"; up to ${spend.possibly_billed_usd:.4f} more possibly billed by attempts that timed out"
            if spend.possibly_billed_usd
            else ""
        ),
        f"- tokens: {spend.tokens.prompt:,} prompt, {spend.tokens.completion:,} completion "
        f"({spend.tokens.reasoning:,} of them reasoning)"
        + (f"; {spend.estimated} samples charged on estimated usage" if spend.estimated else ""),
        f"- cost of the kept traces: ${traces['cost']:.4f}",
        "",
        "## Licence",
        "",
        f"- this dataset: `{recipe.dataset.license}`",
        *[f"- source `{name}`: {lic}" for name, lic in licences],
        "- the traces were generated by the teacher above; check its terms of use before redistributing.",
        "",
    ]
    return "\n".join(out)


def _trace_stats(path: Path) -> dict[str, Any]:
    st: dict[str, Any] = {
        "teachers": set(),
        "endpoints": set(),
        "domains": Counter(),
        "sources": Counter(),
        "lengths": [],
        "cost": 0.0,
    }
    for t in JsonlFile(path, Trace, key="sample_id").iter():
        st["teachers"].add(t.teacher)
        ep = t.metadata.get("endpoint")
        if ep:
            parts = urlsplit(str(ep))
            port = f":{parts.port}" if parts.port else ""
            st["endpoints"].add(f"{parts.scheme}://{parts.hostname}{port}{parts.path}")
        st["domains"][t.domain] += 1
        st["sources"][t.source] += 1
        st["lengths"].append(int(t.metadata.get("tokens", 0)))
        st["cost"] += t.cost_usd
    return st


def _stage_counts(harvest, verify, curate) -> list[str]:
    lines = []
    if harvest:
        c = harvest.get("counts", {})
        src = harvest.get("source", {})
        lines.append(
            f"- harvest: {c.get('problems', harvest.get('problems', '?'))} problems asked, "
            f"{c.get('done_total', harvest.get('done', '?'))} samples, {c.get('failed', '?')} item errors"
            + (f"; source rows read {src.get('rows')}" if src.get("rows") is not None else "")
        )
        dropped = {k[5:]: v for k, v in src.items() if k.startswith("drop:")}
        if dropped:
            lines.append(f"- problems dropped before harvesting: {json.dumps(dropped, sort_keys=True)}")
    else:
        lines.append("- harvest: no harvest.json in the run folder")
    if verify:
        lines.append(f"- verify: `{json.dumps(_compact(verify), sort_keys=True)[:600]}`")
    if curate:
        lines += ["", "| curation step | samples in | samples out | problems out | dropped |", "|---|---|---|---|---|"]
        for s in curate.get("steps", []):
            why = ", ".join(f"{k} {v}" for k, v in s.get("dropped", {}).items()) or "—"
            lines.append(f"| {s['step']} | {s['in']} | {s['out']} | {s.get('problems_out', '')} | {why} |")
    return lines


def _compact(verify: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in verify.items() if k in ("counts", "by_verifier", "by_status", "tags", "total")} or verify


def _histogram(lengths: list[int], counted_with: str) -> list[str]:
    if not lengths:
        return ["(no traces)"]
    edges = [0]
    while edges[-1] <= max(lengths):
        edges.append(max(64, edges[-1] * 2))
    counts = Counter(next(i for i in range(len(edges) - 1) if edges[i] <= x < edges[i + 1]) for x in lengths)
    top = max(counts.values())
    lines = ["```"]
    for i in range(len(edges) - 1):
        n = counts.get(i, 0)
        bar = "#" * max(1 if n else 0, round(_BAR * n / top))
        lines.append(f"{edges[i]:>7}-{edges[i + 1] - 1:<7} {bar:<{_BAR}} {n}")
    lines.append("```")
    lines.append(
        f"min {min(lengths)}, median {sorted(lengths)[len(lengths) // 2]}, max {max(lengths)}; "
        f"counted with {counted_with or 'teacher usage counts'}"
    )
    return lines


def _pass_rates(verify, curate) -> list[str]:
    lines = []
    pr = (curate or {}).get("pass_rates")
    if pr:
        lines.append(
            f"- samples passing the keep policy: {pr['passing_samples']} of {pr['samples']} "
            f"({_pct(pr['sample_pass_rate'])}); problems solved at least once: {pr['solved_problems']} of "
            f"{pr['problems']} ({_pct(pr['problem_solve_rate'])})"
        )
    lengths = (curate or {}).get("lengths")
    if lengths:
        lines.append(
            f"- traces longer than the SFT max length ({lengths['sft_max_length']} tokens): "
            f"{lengths['over_sft_max_length']} ({_pct(lengths['share_over_sft_max_length'])})"
        )
    if not lines:
        lines.append("- no curate.json in the run folder")
    return lines


def _decontam(recipe: Recipe, curate) -> list[str]:
    cfg = recipe.curate.decontam
    if not cfg.enabled:
        return [
            "**Decontamination was turned OFF** (`curate.decontam.enabled: false` in the recipe): rows were NOT "
            "checked against evaluation sets; do not report benchmark numbers of a model trained on them without "
            "checking."
        ]
    dc = (curate or {}).get("decontam", {})
    cur = dc.get("curate") or {}
    pre = dc.get("pre_harvest") or {}
    lines = [
        f"Word {cfg.n}-gram overlap (lowercased `\\w+` tokens) against: "
        f"{', '.join(cur.get('eval_sets') or pre.get('eval_sets') or []) or 'the configured eval sets'}"
        + (f"; allow-list: {len(cfg.allow)} phrase(s)" if cfg.allow else "")
        + ".",
        f"Removed before harvesting: {pre.get('removed_count', 0)}; removed at curation: "
        f"{cur.get('removed_count', 0)}.",
        "",
    ]
    removed = [("before harvest", r) for r in pre.get("removed", [])]
    removed += [("curation", r) for r in cur.get("removed", [])]
    if removed:
        lines += ["| when | problem | eval set | eval item | matched n-gram |", "|---|---|---|---|---|"]
        lines += [
            f"| {when} | {r['problem_id']} | {r['eval_set']} | {r['eval_id']} | {r['ngram']} |" for when, r in removed
        ]
    return lines


def _source_licences(recipe: Recipe) -> list[tuple[str, str]]:
    from tracesynth.sources import builtin as data

    out = []
    for src in recipe.sources:
        if src.kind == "builtin" and src.name:
            try:
                d = data.get(src.name, src.split)
            except Exception:  # an unknown name already failed harvesting; the card just omits it
                continue
            out.append((d.key, d.licence))
        elif src.kind == "gym":
            out.append((f"gym/{src.name}", "generated with reasoning-gym (Apache-2.0)"))
        else:
            out.append((src.name or src.path or src.kind, "as the source states (not recorded by tracesynth)"))
    return out


def _json(path: Path) -> dict[str, Any] | None:
    data = read_json(path, bad_ok=True)
    return data if isinstance(data, dict) else None


def _samples_per_problem(t: Any) -> str:
    if t.until_verified is None:
        return f"n = {t.n} per problem"
    return (
        f"sampled until verified: asked again only where no sample passed, up to {t.until_verified} per problem, "
        f"stopping at {t.keep_per_problem} passing"
    )


def _quote(text: str | None) -> str:
    if not text:
        return "none"
    return "\n\n  > " + text.replace("\n", "\n  > ")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


__all__ = ["render_card"]
