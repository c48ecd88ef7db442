"""Problem sources: JSONL, Parquet, CSV, saved HF datasets, Hub datasets, reasoning-gym and shipped sets → Problem.

:func:`iter_problems` streams Problems from one or several ``source:`` entries of a recipe:

* Reading is streamed: JSONL line by line, CSV with the csv module, Parquet in record batches
  (pyarrow), a saved dataset memory-mapped (``datasets.load_from_disk``), a Hub dataset with
  ``streaming=True``, reasoning-gym entries generated one at a time. Nothing holds a whole file.
* Columns map to fields (``columns: {question: ..., answer: ..., tests: ..., domain: ..., id: ...}``);
  unmapped fields are looked up under common names. Other scalar columns go to metadata.
* Per source: ``shuffle`` (seeded; exact for jsonl/disk/gym/builtin via a row index, a seeded
  ``shuffle_buffer`` for parquet/csv/hub), then hygiene, then ``offset`` and ``limit`` — both
  count problems that passed hygiene, so ``limit: 500`` and ``offset: 500`` with the same seed
  and hygiene give disjoint sets.
* Several sources are interleaved at random in proportion to their ``weight`` (seeded by the
  first source's seed) until all are exhausted; weight 0 leaves a source out.
* Hygiene (s1): questions with figures (``[asy]``, image links), missing answers, answers without
  ``\\boxed{}`` when required, and repeated ids are dropped; so are rows whose text is not
  valid Unicode (a lone surrogate such as ``\\ud800`` cannot be written to any file:
  ``drop:unencodable``). A shipped *eval* set is read whole
  (no hygiene) unless the source sets ``hygiene`` explicitly. ``stats`` counts ``rows`` read,
  ``problems`` yielded, ``drop:<reason>`` and ``source:<label>``.
* reasoning-gym problems keep what scoring needs in ``Problem.metadata``: ``gym_task``,
  ``gym_entry`` (a JSON-safe copy of the entry), ``gym_index`` and ``gym_config``.

Readers live in :mod:`tracesynth.sources.readers`. Bad input (unreadable file, invalid line, missing
column, a row without a question) raises
:class:`~tracesynth.errors.SourceError` naming the file, the row and the field. This module does
not decontaminate (see :mod:`tracesynth.decontam`) or render prompts.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tracesynth._ids import stable_hash
from tracesynth.config import HygieneConfig, Recipe, SourceConfig
from tracesynth.config.schema import DifficultyConfig
from tracesynth.errors import SourceError
from tracesynth.records import Problem
from tracesynth.sources import readers as source_readers

FIELDS = ("question", "answer", "tests", "domain", "id", "messages")
_DEFAULT_COLUMNS = {
    "question": ("question", "problem", "prompt", "input", "instruction"),
    "answer": ("answer", "final_answer", "expected_answer", "gold", "target"),
    "tests": ("tests", "test", "test_cases", "input_output"),
    "domain": ("domain",),
    "id": ("id", "task_id", "problem_id", "unique_id"),
    "messages": ("messages",),
}
# s1's data/filter.ipynb: `"![Image]" in q`, `any(f"p{i}." in q for i in range(1, 1000))`, and its bold regex
_S1_PATTERNS = (
    re.compile(re.escape("![Image]")),
    re.compile(r"p[1-9]\d{0,2}\."),
    re.compile(r"\*\*(?=.*\d)[^\s\]]*\*\*"),
)
_FIGURE = re.compile(r"\[asy\]|!\[[^\]]*\]\([^)]*\)|<img\b|https?://\S+?\.(?:png|jpe?g|gif|svg|webp)\b", re.IGNORECASE)


def iter_problems(
    recipe_or_sources: Recipe | SourceConfig | Sequence[SourceConfig], *, stats: Counter | None = None
) -> Iterator[Problem]:
    """Stream the Problems of a recipe's ``source`` (or of the given source configs)."""
    if isinstance(recipe_or_sources, Recipe):
        sources = recipe_or_sources.sources
    elif isinstance(recipe_or_sources, SourceConfig):
        sources = [recipe_or_sources]
    else:
        sources = list(recipe_or_sources)
    stats = stats if stats is not None else Counter()
    streams = [(_source_problems(s, stats), s.weight) for s in sources if s.weight > 0]
    seen: set[str] = set()
    for problem in _interleave(streams, seed=sources[0].seed if sources else 0):
        if problem.id in seen:
            stats["drop:duplicate_id"] += 1
            continue
        seen.add(problem.id)
        stats["problems"] += 1
        stats[f"source:{problem.source}"] += 1
        yield problem


def source_label(src: SourceConfig) -> str:
    """The ``Problem.source`` of a source: stable across machines (no absolute paths)."""
    if src.kind == "builtin":
        return f"{src.name}/{src.split}" if src.split else str(src.name)
    if src.kind == "gym":
        return f"gym/{src.name}"
    if src.kind == "hub":
        return f"hub/{src.name}" + (f"/{src.split}" if src.split else "")
    return src.name or Path(src.path or "").name


def _interleave(streams: list[tuple[Iterator[Problem], float]], seed: int) -> Iterator[Problem]:
    if len(streams) == 1:
        yield from streams[0][0]
        return
    rng = random.Random(f"mix:{seed}")
    active = list(streams)
    while active:
        i = rng.choices(range(len(active)), weights=[w for _, w in active])[0] if len(active) > 1 else 0
        try:
            yield next(active[i][0])
        except StopIteration:
            active.pop(i)


def _source_problems(src: SourceConfig, stats: Counter) -> Iterator[Problem]:
    label = source_label(src)
    columns = dict(src.columns)
    domain = src.domain
    hygiene = src.hygiene
    if src.kind == "builtin":
        from tracesynth.sources import builtin as data

        if not src.name:
            raise SourceError("source.name: required for kind builtin (e.g. gsm8k)")
        ds = data.get(src.name, src.split)
        label = f"{ds.name}/{ds.split}"
        columns = {**ds.columns, **columns}
        domain = domain or ds.domain
        if ds.role == "eval" and "hygiene" not in src.model_fields_set:
            hygiene = HygieneConfig(drop_figures=False, require_answer=False)  # a benchmark is read whole
    unknown = set(columns) - set(FIELDS)
    if unknown:
        raise SourceError(f"source.columns: unknown field(s) {sorted(unknown)}; fields are {', '.join(FIELDS)}")
    rows = source_readers.rows(src)
    mapping: dict[str, str | None] | None = None
    skipped = kept = 0
    if src.limit is not None and src.limit <= 0:
        return
    labels = _difficulty_labels(src.difficulty) if src.difficulty is not None else None
    matched = 0
    for where, row in rows:
        if mapping is None:
            mapping = _resolve_columns(row, columns, hygiene, where)
        stats["rows"] += 1
        if src.where and not _selected(row, src.where):
            stats["drop:where"] += 1
            continue
        matched += 1
        if src.head is not None and matched > src.head:
            return
        if not _encodable(row):
            stats["drop:unencodable"] += 1
            continue
        problem = _to_problem(row, mapping, where, label, domain or "math", src)
        reason = hygiene_reason(problem, hygiene)
        if reason is None and labels is not None and src.difficulty is not None:
            reason = _difficulty_reason(problem, labels, src.difficulty)
        if reason:
            stats[f"drop:{reason}"] += 1
            continue
        if src.template:
            problem.metadata["prompt_template"] = src.template
        if skipped < src.offset:
            skipped += 1
            continue
        kept += 1
        yield problem
        if src.limit is not None and kept >= src.limit:
            return  # before reading another row: a capped source reads exactly what it yields


def _selected(row: dict[str, Any], where: dict[str, Any]) -> bool:
    """``source.where``: every column holds the value (or one of the values in a list)."""
    for col, want in where.items():
        have = row.get(col)
        if (isinstance(want, list) and have not in want) or (not isinstance(want, list) and have != want):
            return False
    return True


def _question_key(text: str) -> str:
    return stable_hash("question", " ".join(text.split()))


def _difficulty_labels(cfg: DifficultyConfig) -> dict[str, float]:
    """Question-text hash -> difficulty, read once from the labelled set (hashes keep memory small)."""
    src = cfg.labels
    columns = dict(src.columns)
    labels: dict[str, float] = {}
    mapping: dict[str, str | None] | None = None
    for where, row in source_readers.rows(src):
        if mapping is None:
            mapping = _resolve_columns(row, columns, HygieneConfig(require_answer=False), where)
            if cfg.value not in row:
                raise SourceError(f"source.difficulty.value: column {cfg.value!r} not in {where}; columns: {list(row)}")
        qcol = mapping["question"]
        question, value = row.get(qcol) if qcol else None, row.get(cfg.value)
        if question is None or value is None:
            continue
        try:
            labels[_question_key(str(question))] = float(value)
        except (TypeError, ValueError):
            continue  # an unlabelled or unparsed row (the labelled set has some): no label
    return labels


def _difficulty_reason(problem: Problem, labels: dict[str, float], cfg: DifficultyConfig) -> str | None:
    level = labels.get(_question_key(problem.prompt or ""))
    if level is None:
        return "no_difficulty"
    if (cfg.min is not None and level < cfg.min) or (cfg.max is not None and level > cfg.max):
        return "difficulty"
    problem.metadata["difficulty"] = level
    return None


def source_type(problem: Problem) -> str:
    """Where a problem comes from: ``metadata.source_type`` (s1's pool column) or ``source``."""
    return str(problem.metadata.get("source_type") or problem.source or "")


def hygiene_reason(problem: Problem, hygiene: HygieneConfig) -> str | None:
    """Why the s1 question hygiene drops ``problem`` (``figure``, ``s1_pattern``, ``missing_answer``,
    ``no_boxed``), or None."""
    text = problem.prompt or " ".join(str(m.get("content", "")) for m in problem.messages or [])
    if hygiene.drop_figures:
        figures = {m.group(0).lower() for m in _FIGURE.finditer(text)}
        allowed = any(k.lower() in source_type(problem).lower() for k in hygiene.figures_allowed_from)
        if figures and not (allowed and figures == {"[asy]"}):
            return "figure"
        # s1 keeps an allowed source's [asy] problem whatever else it holds (its notebook's elif branch)
        if allowed and "[asy]" in text:
            return _answer_reason(problem, hygiene)
    if hygiene.s1_patterns and any(rx.search(text) for rx in _S1_PATTERNS):
        return "s1_pattern"
    return _answer_reason(problem, hygiene)


def _answer_reason(problem: Problem, hygiene: HygieneConfig) -> str | None:
    has_answer = problem.answer is not None and problem.answer.strip() != ""
    if hygiene.require_answer and not has_answer and not problem.tests:
        return "missing_answer"
    if hygiene.require_boxed and not (has_answer and "\\boxed{" in (problem.answer or "")):
        return "no_boxed"
    return None


# -- columns → Problem -------------------------------------------------------------------------
def _resolve_columns(
    row: dict[str, Any], columns: dict[str, str], hygiene: HygieneConfig, where: str
) -> dict[str, str | None]:
    """Pick the column of each field from the first row (explicit mapping first, then common names)."""
    file = re.sub(r"(:\d+| row \d+| #\d+)$", "", where)
    keys = list(row)
    mapping: dict[str, str | None] = {}
    for fld in FIELDS:
        if fld in columns:
            if columns[fld] not in row:
                raise SourceError(
                    f"{file}: column {columns[fld]!r} (source.columns.{fld}) not found; columns are: {', '.join(keys)}"
                )
            mapping[fld] = columns[fld]
        else:
            mapping[fld] = next((c for c in _DEFAULT_COLUMNS[fld] if c in row), None)
    if mapping["question"] is None and mapping["messages"] is None:
        raise SourceError(
            f"{file}: no question column (looked for {', '.join(_DEFAULT_COLUMNS['question'])}); "
            f"map one with source.columns.question; columns are: {', '.join(keys)}"
        )
    if hygiene.require_answer and mapping["answer"] is None and mapping["tests"] is None:
        raise SourceError(
            f"{file}: no answer column (looked for {', '.join(_DEFAULT_COLUMNS['answer'])}); "
            "map one with source.columns.answer or set source.hygiene.require_answer: false"
        )
    return mapping


def _to_problem(
    row: dict[str, Any], mapping: dict[str, str | None], where: str, label: str, domain: str, src: SourceConfig
) -> Problem:
    qcol, mcol = mapping["question"], mapping["messages"]
    question = row.get(qcol) if qcol else None
    messages = row.get(mcol) if mcol else None
    if isinstance(question, list) and question and isinstance(question[0], dict):
        question, messages = None, question  # a chat-format column
    if isinstance(messages, str):
        messages = _maybe_json(messages)
    if question is not None and not isinstance(question, str):
        question = str(question)
    if (question is None or not question.strip()) and not messages:
        raise SourceError(f"{where}: no question (field {qcol or mcol!r} is empty or missing)")
    used = {c for c in mapping.values() if c}
    metadata = {k: v for k, v in row.items() if k not in used and (_scalar(v) or k.startswith("gym_"))}
    answer = row.get(mapping["answer"]) if mapping["answer"] else None
    tests = row.get(mapping["tests"]) if mapping["tests"] else None
    pid = row.get(mapping["id"]) if mapping["id"] else None
    try:
        return Problem(
            id="" if pid is None else str(pid),
            prompt=question if question and question.strip() else None,
            messages=messages if isinstance(messages, list) and messages else None,
            answer=None if answer is None else (answer if isinstance(answer, str) else json.dumps(answer)),
            tests=_maybe_json(tests) if isinstance(tests, str) else tests,
            source=label,
            domain=str(row.get(mapping["domain"]) or domain) if mapping["domain"] else domain,
            metadata=metadata,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        fld = ".".join(str(p) for p in err["loc"]) or "row"
        raise SourceError(f"{where}: field {fld!r}: {err['msg']}") from None


def _encodable(value: Any) -> bool:
    """Whether every text in a row can be written as UTF-8 (no lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_encodable(v) for v in value)
    return True


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


def _maybe_json(text: str) -> Any:
    s = text.strip()
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except ValueError:
            return text
    return text


__all__ = ["FIELDS", "hygiene_reason", "iter_problems", "source_label", "source_type"]
