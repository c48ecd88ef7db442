"""Sampling until verified against fixed n: problems with a verified trace, samples paid for, spend, wall.

The simulated teacher gives each problem its own wrong rate, uniform in [0.05, 0.95] (``wrong_rate_range``),
so pass rates per problem spread from 5% to 95% (one in two samples right on average). The same
``--problems`` additions are harvested, in fresh run folders, with:

* fixed ``n`` = 1, 2, 4, 8, then verified (``tracesynth verify``, 2 workers): the usual two stages;
* ``until_verified: K`` for K = 1, 2, 4, 8, which verifies as replies arrive (the verdicts are written;
  no verify stage afterwards).

Each line: problems with at least one verified trace ("covered"), samples asked, spend (priced at
``--prices``), and the wall time of harvest + verify. The ratios are until-verified K over fixed n = K:
spend and wall for the same K. Latency per request is ``--latency`` (lognormal median 0.3 s, sigma 0.5),
concurrency 64, so wall time reflects waiting on the teacher, as against a real endpoint.

    .venv/bin/python bench/until_verified.py [--problems 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _recipe(tmp: Path, name: str, base_url: str, problems: Path, **teacher: Any) -> Any:
    from tracesynth.config import Recipe

    return Recipe.model_validate(
        {
            "name": name,
            "run_dir": str(tmp / name),
            "source": {"kind": "jsonl", "path": str(problems)},
            "teacher": {
                "model": "sim-reasoner",
                "base_urls": [base_url],
                "api_key_env": None,
                "concurrency": 64,
                "prices": {"input": 0.55, "output": 2.19},  # DeepSeek-R1's list price, USD per million tokens
                "sampling": {"max_tokens": 600, "seed": 0, "temperature": 0.6},
                **teacher,
            },
            "verify": {"verifiers": ["math"], "workers": 2},
        }
    )


def _covered(run: Path) -> int:
    ok = set()
    for line in (run / "verdicts.jsonl").read_text().splitlines():
        v = json.loads(line)
        if v["status"] == "pass":
            ok.add(v["problem_id"])
    return len(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--latency", default="lognormal:0.3:0.5")
    ap.add_argument("--ks", default="1,2,4,8")
    args = ap.parse_args()

    import tracesynth as ts
    from tracesynth.sim import SimTeacher

    ks = [int(k) for k in args.ks.split(",")]
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory() as d,
        SimTeacher(wrong_rate_range="0.05:0.95", seed=3, latency=args.latency) as sim,
    ):
        tmp = Path(d)
        problems = tmp / "problems.jsonl"
        with problems.open("w") as fh:
            for i in range(args.problems):
                a, b = 10 + (i * 37) % 900, 100 + (i * 53) % 9000
                fh.write(json.dumps({"id": f"p{i:05d}", "problem": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n")
        for k in ks:
            for how in ("fixed", "until"):
                teacher = {"n": k} if how == "fixed" else {"until_verified": k}
                recipe = _recipe(tmp, f"{how}-{k}", sim.base_url, problems, **teacher)
                t0 = time.perf_counter()
                res = ts.harvest(recipe, quiet=True)
                t_harvest = time.perf_counter() - t0
                if how == "fixed":
                    ts.verify(recipe)
                wall = time.perf_counter() - t0
                run = Path(recipe.run_dir)
                row = {
                    "how": how,
                    "k": k,
                    "covered": _covered(run),
                    "samples": res.new,
                    "spent_usd": round(res.spent_usd, 4),
                    "harvest_s": round(t_harvest, 2),
                    "wall_s": round(wall, 2),
                }
                rows[(how, k)] = row
                print(json.dumps(row), flush=True)
    print()
    head = "| K | fixed n=K: covered / samples / $ / wall s | until verified K: covered / samples / $ / wall s |"
    print(head + " spend ratio | wall ratio |")
    print("|---|---|---|---|---|")
    for k in ks:
        f, u = rows[("fixed", k)], rows[("until", k)]
        print(
            f"| {k} | {f['covered']} / {f['samples']} / {f['spent_usd']:.4f} / {f['wall_s']} | "
            f"{u['covered']} / {u['samples']} / {u['spent_usd']:.4f} / {u['wall_s']} | "
            f"{u['spent_usd'] / f['spent_usd']:.2f} | {u['wall_s'] / f['wall_s']:.2f} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
