"""Benchmark curation at scale: near-dedup (MinHash LSH) and decontamination of 100,000 synthetic questions.

Targets (issue 5): both together under 60 s and under 1.5 GB peak memory on 2 cores. In the same
run, a naive baseline on a 5,000-question subset compares every pair of questions by the exact
Jaccard similarity of the same word 3-gram shingles (what MinHash estimates) and every question
against every eval item by word 8-gram set intersection; the ratios printed are baseline time /
our time on the same subset, the baseline extrapolated to 100,000 questions (all-pairs grows
with n^2), and the recall of LSH against the exact all-pairs answer.

Questions are GSM8K-like word problems built from templates, names, objects and numbers
(seeded); 2% are near-duplicates of an earlier question (one or two words changed) and 0.3%
contain a sentence of a shipped eval item, so both steps find real work.

    .venv/bin/python bench/curate.py [--n 100000] [--subset 5000] [--workers 2] [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from itertools import combinations

from tracesynth.config import DecontamConfig
from tracesynth.decontam.index import DecontamIndex, ngrams, words
from tracesynth.sources.builtin import eval_sets, verified_path
from tracesynth.stages.curate.dedup import exact_duplicates, near_duplicates, shingles

NAMES = [
    "Ava",
    "Ben",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jun",
    "Kira",
    "Liam",
    "Mona",
    "Nico",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Uma",
    "Vik",
    "Wen",
    "Xavi",
    "Yara",
    "Zed",
]
THINGS = [
    "apples",
    "marbles",
    "stickers",
    "books",
    "pencils",
    "coins",
    "cookies",
    "stamps",
    "shells",
    "cards",
    "tickets",
    "beads",
    "plants",
    "bottles",
    "boxes",
    "kites",
    "rocks",
    "balloons",
    "candles",
    "cups",
]
PLACES = ["market", "school", "library", "park", "bakery", "museum", "garden", "harbor", "farm", "station"]
VERBS = ["buys", "finds", "sells", "gives away", "collects", "loses", "trades", "paints", "packs", "counts"]
TEMPLATES = [
    "{a} {v} {n1} {t} at the {p} on Monday and {n2} more on Tuesday. {b} has {n3} fewer {t} than {a}. "
    "If each of the {t} costs {n4} dollars, how much do {a} and {b} spend together?",
    "At the {p}, {a} {v} {n1} {t} every hour for {n2} hours. {b} {v} {n3} {t} per hour for {n4} hours. "
    "How many {t} do they have in total at the end of the day?",
    "{a} has {n1} {t}. {a} gives {b} a third of them and then {v} {n2} more {t}. {b} already had {n3} {t}. "
    "How many more {t} does {b} have than {a} after {n4} days at the {p}?",
    "A {p} orders {n1} crates of {t} with {n2} {t} in each crate. {a} {v} {n3} of the {t} and {b} takes {n4}. "
    "What fraction of the {t} is left in the {p}?",
]


def questions(n: int, seed: int = 0) -> tuple[list[tuple[str, str]], int, int]:
    rng = random.Random(seed)
    eval_texts = []
    for d in eval_sets():
        if d.domain != "math":
            continue
        with verified_path(d).open() as fh:
            eval_texts += [json.loads(line)["problem"] for line in fh]
    out: list[tuple[str, str]] = []
    near = dirty = 0
    for i in range(n):
        r = rng.random()
        if r < 0.02 and out:
            toks = rng.choice(out)[1].split()
            for _ in range(rng.randint(1, 2)):
                toks[rng.randrange(len(toks))] = rng.choice(NAMES)
            text = " ".join(toks)
            near += 1
        else:
            text = rng.choice(TEMPLATES).format(
                a=rng.choice(NAMES),
                b=rng.choice(NAMES),
                t=rng.choice(THINGS),
                p=rng.choice(PLACES),
                v=rng.choice(VERBS),
                n1=rng.randint(2, 999),
                n2=rng.randint(2, 999),
                n3=rng.randint(2, 99),
                n4=rng.randint(2, 99),
            )
            if r > 0.997:
                text = rng.choice(eval_texts)[:300] + " " + text
                dirty += 1
        out.append((f"q{i}", text))
    return out, near, dirty


def peak_mb() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def ours(items, threshold: float, workers: int) -> dict:
    t0 = time.perf_counter()
    index = DecontamIndex.from_config(DecontamConfig())
    t1 = time.perf_counter()
    hits = [i for i, text in items if index.match(text)]
    t2 = time.perf_counter()
    exact = exact_duplicates(items)
    t3 = time.perf_counter()
    near = near_duplicates(items, threshold, workers=workers)
    t4 = time.perf_counter()
    return {
        "index_s": t1 - t0,
        "decontam_s": t2 - t1,
        "exact_s": t3 - t2,
        "near_s": t4 - t3,
        "total_s": t4 - t0,
        "contaminated": len(hits),
        "exact_dups": len(exact),
        "near_dups": near,
    }


def naive(items, threshold: float) -> dict:
    t0 = time.perf_counter()
    sh = [set(shingles(text)) for _, text in items]
    pairs = set()
    for a, b in combinations(range(len(items)), 2):
        sa, sb = sh[a], sh[b]
        inter = len(sa & sb)
        if inter and inter / (len(sa) + len(sb) - inter) >= threshold:
            pairs.add(items[b][0])
    t1 = time.perf_counter()
    eval_grams = []
    for d in eval_sets():
        with verified_path(d).open() as fh:
            for line in fh:
                row = json.loads(line)
                eval_grams.append(set(ngrams(words(row.get("problem") or row.get("prompt") or ""), 8)))
    dirty = 0
    for _, text in items:
        g = set(ngrams(words(text), 8))
        if any(g & e for e in eval_grams):
            dirty += 1
    t2 = time.perf_counter()
    return {"near_s": t1 - t0, "decontam_s": t2 - t1, "total_s": t2 - t0, "dup_items": pairs, "contaminated": dirty}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--subset", type=int, default=5_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()

    t = time.perf_counter()
    items, near_made, dirty_made = questions(args.n)
    print(
        f"generated {len(items):,} questions ({near_made} near-duplicates, {dirty_made} contaminated) "
        f"in {time.perf_counter() - t:.1f}s"
    )

    full = ours(items, args.threshold, args.workers)
    me, kids = peak_mb()
    print(f"\n[ours] {args.n:,} questions, workers={args.workers}")
    print(
        f"  decontam index {full['index_s']:.2f}s + match {full['decontam_s']:.2f}s -> {full['contaminated']} "
        f"contaminated"
    )
    print(
        f"  exact dedup {full['exact_s']:.2f}s -> {full['exact_dups']}; near dedup (MinHash LSH, t={args.threshold}) "
        f"{full['near_s']:.2f}s -> {len(full['near_dups'])} near-duplicates"
    )
    print(
        f"  total {full['total_s']:.1f}s (target < 60 s); peak RSS {me:.0f} MB main, {kids:.0f} MB largest worker "
        f"(target < 1.5 GB)"
    )

    sub = items[: args.subset]
    mine = ours(sub, args.threshold, 1)
    base = naive(sub, args.threshold)
    found = set(mine["near_dups"])
    truth = base["dup_items"]
    recall = len(found & truth) / len(truth) if truth else 1.0
    precision = len(found & truth) / len(found) if found else 1.0
    scale = (args.n / args.subset) ** 2
    print(f"\n[subset] {len(sub):,} questions, one process")
    print(
        f"  naive all-pairs Jaccard {base['near_s']:.1f}s ({len(truth)} items with a duplicate) + naive decontam "
        f"{base['decontam_s']:.1f}s ({base['contaminated']} contaminated) = {base['total_s']:.1f}s"
    )
    print(
        f"  ours: near {mine['near_s']:.2f}s + decontam {mine['index_s'] + mine['decontam_s']:.2f}s = "
        f"{mine['total_s']:.2f}s ({mine['contaminated']} contaminated)"
    )
    print(
        f"  ratio naive/ours on the subset: {base['total_s'] / mine['total_s']:.1f}x; "
        f"LSH recall {recall:.3f}, precision {precision:.3f} vs exact all-pairs"
    )
    extrapolated = base["near_s"] * scale
    print(
        f"  naive all-pairs extrapolated to {args.n:,}: ~{extrapolated / 3600:.1f} h (x{scale:.0f}) vs our near "
        f"dedup {full['near_s']:.1f}s measured -> ratio ~{extrapolated / full['near_s']:.0f}x"
    )


if __name__ == "__main__":
    main()
