"""Decontamination: drop problems that share a word n-gram with an evaluation set.

Text is lowercased and split into ``\\w+`` tokens (so whitespace and punctuation never matter);
a problem is contaminated when any of its word n-grams (n = 8 by default, as s1 and open-r1) is
also an n-gram of an evaluation item. The eval sets are every shipped set with role ``eval``
(``shipped: true``, the default) plus ``eval_sets`` from the recipe: shipped names
(``math500``, ``gsm8k:test``) or JSONL/Parquet/CSV files (question column found the way
:mod:`tracesynth.sources` finds it). ``allow`` lists phrases whose n-grams never count (stock
phrases such as "on the third day the total number of").

It runs twice: :func:`decontam_filter` before harvesting, so no money is spent on a problem that
would be dropped, and again in the curate stage. Each removal is a :class:`Hit` naming the eval
set, the eval item and the matched n-gram. This module does not read or write the run folder.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tracesynth.config import DecontamConfig, HygieneConfig, SourceConfig
from tracesynth.errors import ConfigError
from tracesynth.records import Problem

_WORD = re.compile(r"\w+")
_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class Hit:
    """Why a problem was removed: the eval set and item it shares ``ngram`` with."""

    problem_id: str
    eval_set: str
    eval_id: str
    ngram: str
    source: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def words(text: str) -> list[str]:
    """Lowercased ``\\w+`` tokens."""
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> Iterator[str]:
    for i in range(len(tokens) - n + 1):
        yield " ".join(tokens[i : i + n])


def problem_text(problem: Problem) -> str:
    if problem.prompt is not None:
        return problem.prompt
    return "\n".join(str(m.get("content", "")) for m in problem.messages or [] if m.get("role") != "assistant")


class DecontamIndex:
    """Every n-gram of the eval sets, mapped to the (eval set, item id) it first came from."""

    def __init__(self, n: int = 8, allow: Iterable[str] = ()):
        self.n = n
        self.grams: dict[str, tuple[str, str]] = {}
        self.sets: dict[str, int] = {}  # eval set -> items indexed
        self.allowed: set[str] = set()
        for phrase in allow:
            toks = words(phrase)
            if len(toks) < n:
                raise ConfigError(
                    f"curate.decontam.allow: {phrase!r} has {len(toks)} words; an entry needs at least {n}"
                )
            self.allowed.update(ngrams(toks, n))

    def add(self, eval_set: str, item_id: str, text: str) -> None:
        for g in ngrams(words(text), self.n):
            self.grams.setdefault(g, (eval_set, item_id))
        self.sets[eval_set] = self.sets.get(eval_set, 0) + 1

    def match(self, text: str) -> tuple[str, str, str] | None:
        """The first (eval set, eval item id, n-gram) ``text`` shares, or None."""
        grams = self.grams
        allowed = self.allowed
        for g in ngrams(words(text), self.n):
            hit = grams.get(g)
            if hit is not None and g not in allowed:
                return hit[0], hit[1], g
        return None

    def check(self, problem: Problem) -> Hit | None:
        found = self.match(problem_text(problem))
        return Hit(problem.id, found[0], found[1], found[2], problem.source) if found else None

    @classmethod
    def from_config(cls, cfg: DecontamConfig) -> DecontamIndex:
        """Index the eval sets the recipe names (shipped ones unless ``shipped: false``).

        Indexes are cached per process by configuration and eval-file state (harvest and curate
        in one ``tracesynth run`` build it once), and on disk across processes
        (:mod:`.cache`).
        """
        from tracesynth.decontam import cache as decontam_cache
        from tracesynth.sources.problems import iter_problems

        sources = eval_sources(cfg)
        key = (cfg.n, tuple(cfg.allow), tuple((name, _state(src)) for name, src in sources))
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        index = cls(cfg.n, cfg.allow)
        disk_key = decontam_cache.cache_key(key)
        found = decontam_cache.load(disk_key)
        if found is not None:
            index.grams, index.sets = found
        else:
            for name, source in sources:
                for p in iter_problems(source):
                    index.add(name, p.id, problem_text(p))
            decontam_cache.store(disk_key, index.grams, index.sets)
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = index
        return index


_CACHE: dict[tuple, DecontamIndex] = {}


def _state(src: SourceConfig) -> tuple:
    """What identifies an eval file's content: path, size, mtime (and the registry checksum of a shipped set)."""
    if src.path is None:
        from tracesynth.sources import builtin as data

        ds = data.get(src.name or "", src.split)
        return (src.kind, src.name, src.split, ds.sha256, *_file_state(ds.path))
    path = Path(src.path).resolve()
    if path.is_dir():  # a saved dataset or a parquet folder: the state of every file in it
        files = sorted((str(f.relative_to(path)), *_file_state(f)) for f in path.rglob("*") if f.is_file())
        return (src.kind, str(path), tuple(files))
    return (src.kind, *_file_state(path))


def _file_state(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (str(path), None, None)  # reading it reports the problem; a missing file is never cached
    return (str(path), st.st_mtime_ns, st.st_size)


def eval_sources(cfg: DecontamConfig) -> list[tuple[str, SourceConfig]]:
    """(eval set name, source) for every set decontamination checks, in a stable order."""
    from tracesynth.sources import builtin as data

    loose = HygieneConfig(drop_figures=False, require_answer=False)
    out: dict[str, SourceConfig] = {}
    if cfg.shipped:
        for d in data.eval_sets():
            out[d.key] = SourceConfig(kind="builtin", name=d.name, split=d.split, hygiene=loose)
    for ref in cfg.eval_sets:
        path = Path(ref)
        kind = _KINDS.get(path.suffix.lower())
        if kind is None and path.is_dir():
            kind = "parquet" if any(path.glob("*.parquet")) else "disk"
        if kind is None:  # a shipped set's name: unknown names and splits are a DataError listing the known ones
            d = data.get(*data.parse_ref(ref))
            out[d.key] = SourceConfig(kind="builtin", name=d.name, split=d.split, hygiene=loose)
            continue
        if not path.exists():
            raise ConfigError(f"curate.decontam.eval_sets: {ref}: no such file")
        out[path.name] = SourceConfig.model_validate({"kind": kind, "path": str(path), "hygiene": loose})
    return list(out.items())


def decontam_filter(
    problems: Iterable[Problem],
    cfg: DecontamConfig,
    *,
    stats: Counter | None = None,
    removed: list[Hit] | None = None,
    index: DecontamIndex | None = None,
) -> Iterator[Problem]:
    """Yield the problems that share no n-gram with the eval sets; record the others.

    ``stats["drop:decontam"]`` counts removals and ``removed`` (when given) collects a
    :class:`Hit` for each. With ``cfg.enabled`` false every problem passes through unchanged.
    The index is built on the first call (or pass a prebuilt ``index``).
    """
    if not cfg.enabled:
        yield from problems
        return
    index = index or DecontamIndex.from_config(cfg)
    for problem in problems:
        hit = index.check(problem)
        if hit is None:
            yield problem
            continue
        if stats is not None:
            stats["drop:decontam"] += 1
        if removed is not None:
            removed.append(hit)


def decontam_summary(cfg: DecontamConfig, hits: list[Hit], eval_sets: list[str] | None = None) -> dict[str, Any]:
    """The JSON block written to harvest.json / curate.json and shown in the dataset card."""
    names = eval_sets if eval_sets is not None else [name for name, _ in eval_sources(cfg)] if cfg.enabled else []
    return {
        "enabled": cfg.enabled,
        "n": cfg.n,
        "eval_sets": names,
        "allow": list(cfg.allow),
        "removed_count": len(hits),
        "by_eval_set": dict(Counter(h.eval_set for h in hits)),
        "removed": [h.as_dict() for h in hits],
    }


__all__ = ["DecontamIndex", "Hit", "decontam_filter", "decontam_summary", "eval_sources", "ngrams", "words"]
