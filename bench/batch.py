"""Batch mode's client work for many requests, next to the online harvester's, and what batch saves in dollars.

Every measured step runs in a fresh child process of this script (its CPU time and peak RSS are its
own); the simulated teacher runs in its own process (``SimProcess``, ``batch_delay_s=0``), so its work
of answering the batch is not counted as the client's. Steps:

* ``write``   — ``export_batch``: stream N problems, render prompts, sample ids, request bodies, split
                into batch files of 50,000 requests (OpenAI's limit) plus their maps;
* ``batch``   — ``harvest_batch`` end to end against the simulator: plan + write + upload + create +
                poll + download the output files + ingest (the whole client side of a batch harvest);
* ``ingest``  — ``ingest_results`` of those output files into a fresh run folder: parse, reasoning
                split, Sample rows, ledger;
* ``online``  — the online harvester (``tracesynth.harvest``, concurrency 256, 50 ms latency) on a
                smaller sample (``--online-requests``); its client CPU per request x N is the baseline.

Printed: CPU seconds and µs per request for each step, wall time, peak RSS, and the ratio online /
batch client CPU. Then the price of harvesting the s1K and Sky-T1 recipes online and in batch
(``tracesynth.accounting.estimate``: ``harvest_usd`` vs ``harvest_batch_usd``; the recipes' hub sources are
not read — problem counts are the pools the recipes describe and prompt tokens their ``cost`` block).

    .venv/bin/python bench/batch.py [--requests 100000] [--online-requests 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the cost estimate must never reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

MODEL = "sim-reasoner"
ROOT = Path(__file__).resolve().parent.parent


def prompt(i: int) -> str:  # the same questions as bench/harvest.py
    return f"Calculate {1000 + i * 7} + {37 * i % 9973} - {i % 89}."


def recipe(run_dir: Path, src: Path, base_url: str, n: int, conc: int = 256) -> Any:
    from tracesynth.config import Recipe

    if not src.exists():
        with src.open("w") as fh:
            for i in range(n):
                fh.write(json.dumps({"id": f"b{i}", "problem": prompt(i), "answer": "0"}) + "\n")
    return Recipe.model_validate(
        {
            "name": "bench",
            "run_dir": str(run_dir),
            "source": {"kind": "jsonl", "path": str(src)},
            "teacher": {
                "model": MODEL,
                "base_urls": [base_url],
                "api_key_env": None,
                "concurrency": conc,
                "sampling": {"max_tokens": 400},
                "prices": {"input": 0.55, "output": 2.19},
                "timeout_s": 120,
                "batch": {"poll_s": 0.2, "poll_max_s": 1.0},
            },
        }
    )


# -- steps (each in its own child process) ---------------------------------------------------------
def step(name: str, work: Path, base_url: str, n: int) -> dict[str, Any]:
    from tracesynth.stages.harvest import export_batch, harvest_batch, ingest_results

    src = work / f"problems-{n}.jsonl"
    t0, c0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {}
    if name == "write":
        res = export_batch(recipe(work / "run-write", src, base_url, n), work / "files")
        out = {
            "files": len(res.files),
            "requests": res.submitted,
            "mb": round(sum(Path(f).stat().st_size for f in res.files) / 1e6, 1),
        }
    elif name == "batch":
        res = harvest_batch(recipe(work / "run-batch", src, base_url, n), quiet=True)
        outputs = sorted((work / "run-batch" / "batches").glob("*.output.jsonl"))
        out = {
            "new": res.new,
            "status": res.status,
            "output_mb": round(sum(p.stat().st_size for p in outputs) / 1e6, 1),
        }
    elif name == "ingest":
        r = recipe(work / "run-write", src, base_url, n)  # the maps written by the `write` step
        new = 0
        for p in sorted((work / "run-batch" / "batches").glob("*.output.jsonl")):
            new += ingest_results(r, p).new
        out = {"new": new}
    elif name == "online":
        import tracesynth

        res = tracesynth.harvest(recipe(work / f"run-online-{n}", src, base_url, n), quiet=True, progress=False)
        out = {"new": res.new}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {**out, "wall": wall, "cpu": cpu, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(name: str, work: Path, base_url: str, n: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--work", str(work), "--base-url", base_url, "--requests", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prices() -> list[tuple[str, Any]]:
    from tracesynth.accounting.estimate import estimate
    from tracesynth.config import load_recipe

    local = "source={kind: builtin, name: gsm8k, split: train}"  # only to render prompts offline
    out = []
    for name, pool in (("s1k", 59_000), ("sky_t1", 16_000)):  # s1: the 59K pool; Sky-T1: its sources' limits
        est = estimate(load_recipe(ROOT / "recipes" / f"{name}.yaml", [local]), problems=pool)
        out.append((name, est))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--online-requests", type=int, default=4_000)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--base-url", default="http://127.0.0.1:9/v1", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(step(args.child, Path(args.work), args.base_url, args.requests)))
        return

    from tracesynth.sim import SimProcess

    n, m = args.requests, args.online_requests
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    rows: dict[str, dict[str, Any]] = {}
    with SimProcess(model=MODEL, batch_delay_s=0.0) as sim:
        rows["write"] = measure("write", work, sim.base_url, n)
        rows["batch"] = measure("batch", work, sim.base_url, n)
        rows["ingest"] = measure("ingest", work, sim.base_url, n)
    with SimProcess(model=MODEL, latency=0.05) as sim:
        rows["online"] = measure("online", work, sim.base_url, m)
    print(f"client work for {n:,} requests (batch) vs the online harvester ({m:,} requests, scaled to {n:,}):")
    print(f"{'step':<8} {'requests':>9} {'CPU s':>8} {'µs/req':>8} {'wall s':>8} {'RSS MB':>7}  notes")
    for name, r in rows.items():
        k = m if name == "online" else n
        notes = {k2: v for k2, v in r.items() if k2 not in ("wall", "cpu", "rss_mb")}
        print(
            f"{name:<8} {k:>9,} {r['cpu']:>8.2f} {r['cpu'] / k * 1e6:>8.0f} {r['wall']:>8.2f} {r['rss_mb']:>7.0f}  "
            f"{json.dumps(notes)}"
        )
    online_cpu = rows["online"]["cpu"] / m * n
    batch_cpu = rows["batch"]["cpu"]
    print(
        f"online harvester client CPU for {n:,} requests (scaled): {online_cpu:.1f} s; "
        f"batch end to end: {batch_cpu:.1f} s -> ratio online/batch = {online_cpu / batch_cpu:.2f}x"
    )
    print("\nharvest price, online vs batch (tracesynth.accounting.estimate):")
    for name, est in prices():
        saved = est.harvest_usd - est.harvest_batch_usd
        print(
            f"{name:<7} {est.requests:>7,} requests x ({est.prompt_tokens:,.0f} + {est.completion_tokens:,.0f} "
            f"tokens): online ${est.harvest_usd:,.2f}, batch ${est.harvest_batch_usd:,.2f} (saves ${saved:,.2f})"
        )


if __name__ == "__main__":
    main()
