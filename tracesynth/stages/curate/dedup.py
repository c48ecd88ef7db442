"""Question deduplication: exact (normalised text) and near-duplicate (MinHash LSH via datasketch).

* Exact: questions equal after :func:`normalise` — lowercased ``\\w+`` words plus every symbol
  that can change a problem's meaning (``+ - * / = ( ) < > ^ % $`` …; the Unicode minus and
  en dash count as ``-``, ``×`` as ``*``, ``÷`` as ``/``), with whitespace and prose punctuation
  (``. , ; : ! ?`` and quotes) dropped. So "Hello, World!" repeats "hello world", but
  "47 + 38" does not repeat "47 − 38".
* Near: Jaccard similarity of 3-gram shingles of the same tokens, estimated with ``datasketch.MinHash``
  (``num_perm`` permutations, xxh32 shingle hashes) and indexed in ``datasketch.MinHashLSH`` at ``threshold``.
  The LSH bands favour recall and every candidate is confirmed with its MinHash Jaccard
  estimate. Items are visited in order; one with a confirmed earlier kept item is a duplicate
  of it, so the first occurrence always survives. Signatures can be computed in
  worker processes (``workers``); the index itself is built in order in this process, so the
  result does not depend on the number of workers.

Both return ``{duplicate id: id of the kept item}``. This module does not decide which sample of
a problem to keep (select.py) and knows nothing about the run folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

SHINGLE = 3
_TOKEN = re.compile(r"\w+|[^\w\s]")
_PROSE = frozenset(".,;:!?'\"`‘’“”…")
_SAME_SYMBOL = str.maketrans({"−": "-", "–": "-", "×": "*", "÷": "/"})


def tokens(text: str) -> list[str]:
    """Lowercased words and meaningful symbols of ``text`` (see module docstring)."""
    return [t for t in _TOKEN.findall(text.lower().translate(_SAME_SYMBOL)) if t not in _PROSE]


def normalise(text: str) -> str:
    return " ".join(tokens(text))


def exact_duplicates(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{id: first id with the same normalised text}`` for every repeat."""
    first: dict[str, str] = {}
    dups: dict[str, str] = {}
    for item_id, text in items:
        key = normalise(text)
        kept = first.setdefault(key, item_id)
        if kept != item_id:
            dups[item_id] = kept
    return dups


def shingles(text: str, k: int = SHINGLE) -> list[bytes]:
    toks = tokens(text)
    if len(toks) < k:
        return [" ".join(toks).encode()] if toks else [b""]
    return list({" ".join(toks[i : i + k]).encode() for i in range(len(toks) - k + 1)})


def _signatures(texts: Sequence[str], num_perm: int, seed: int) -> list:
    import xxhash
    from datasketch import LeanMinHash, MinHash

    # xxh32 instead of datasketch's default sha1: the same 32-bit hash role, ~2x faster signatures
    gen = MinHash.generator((shingles(t) for t in texts), num_perm=num_perm, seed=seed, hashfunc=xxhash.xxh32_intdigest)
    return [LeanMinHash(m) for m in gen]


def near_duplicates(
    items: Sequence[tuple[str, str]],
    threshold: float = 0.8,
    *,
    num_perm: int = 128,
    seed: int = 1,
    workers: int = 1,
    chunk: int = 5_000,
) -> dict[str, str]:
    """``{id: id of an earlier item with estimated Jaccard >= threshold}`` (see module docstring)."""
    from datasketch import MinHashLSH

    texts = [t for _, t in items]
    if workers > 1 and len(texts) > chunk:
        parts = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
        with ProcessPoolExecutor(workers) as pool:
            done = pool.map(_signatures, parts, [num_perm] * len(parts), [seed] * len(parts))
            sigs = [m for part in done for m in part]
    else:
        sigs = _signatures(texts, num_perm, seed)
    position = {item_id: i for i, (item_id, _) in enumerate(items)}
    # bands tuned towards recall (false negatives weigh 4x false positives); every candidate the
    # index returns is then checked against the threshold with its MinHash estimate
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.2, 0.8))
    dups: dict[str, str] = {}
    for (item_id, _), mh in zip(items, sigs, strict=True):
        found = [c for c in lsh.query(mh) if mh.jaccard(sigs[position[c]]) >= threshold]
        if found:
            dups[item_id] = min(found, key=position.__getitem__)
            continue
        lsh.insert(item_id, mh)
    return dups


__all__ = ["exact_duplicates", "near_duplicates", "normalise", "shingles", "tokens"]
