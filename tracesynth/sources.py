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
  ``\\boxed{}`` when required, and repeated ids are dropped. A shipped *eval* set is read whole
  (no hygiene) unless the source sets ``hygiene`` explicitly. ``stats`` counts ``rows`` read,
  ``problems`` yielded, ``drop:<reason>`` and ``source:<label>``.
* reasoning-gym problems keep what scoring needs in ``Problem.metadata``: ``gym_task``,
  ``gym_entry`` (a JSON-safe copy of the entry), ``gym_index`` and ``gym_config``.

Bad input (unreadable file, invalid line, missing column, a row without a question) raises
:class:`~tracesynth.errors.SourceError` naming the file, the row and the field. This module does
not decontaminate (see :mod:`tracesynth.curate.decontam`) or render prompts.
"""

from __future__ import annotations

import csv
import json
import random
import re
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tracesynth.config import HygieneConfig, Recipe, SourceConfig
from tracesynth.errors import SourceError
from tracesynth.records import Problem

FIELDS = ("question", "answer", "tests", "domain", "id", "messages")
_DEFAULT_COLUMNS = {
    "question": ("question", "problem", "prompt", "input", "instruction"),
    "answer": ("answer", "final_answer", "expected_answer", "gold", "target"),
    "tests": ("tests", "test", "test_cases", "input_output"),
    "domain": ("domain",),
    "id": ("id", "task_id", "problem_id", "unique_id"),
    "messages": ("messages",),
}
_FIGURE = re.compile(
    r"\[asy\]|!\[[^\]]*\]\([^)]*\)|<img\b|https?://\S+?\.(?:png|jpe?g|gif|svg|webp)\b", re.IGNORECASE
)
Row = tuple[str, dict[str, Any]]  # (where: "file:line" / "file row N", row)


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
        from tracesynth import data

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
    rows = _rows(src)
    mapping: dict[str, str | None] | None = None
    skipped = kept = 0
    if src.limit is not None and src.limit <= 0:
        return
    for where, row in rows:
        if mapping is None:
            mapping = _resolve_columns(row, columns, hygiene, where)
        stats["rows"] += 1
        problem = _to_problem(row, mapping, where, label, domain or "math", src)
        reason = hygiene_reason(problem, hygiene)
        if reason:
            stats[f"drop:{reason}"] += 1
            continue
        if skipped < src.offset:
            skipped += 1
            continue
        kept += 1
        yield problem
        if src.limit is not None and kept >= src.limit:
            return  # before reading another row: a capped source reads exactly what it yields


def hygiene_reason(problem: Problem, hygiene: HygieneConfig) -> str | None:
    """Why the s1 question hygiene drops ``problem`` (``figure``, ``missing_answer``, ``no_boxed``), or None."""
    if hygiene.drop_figures:
        text = problem.prompt or " ".join(str(m.get("content", "")) for m in problem.messages or [])
        if _FIGURE.search(text):
            return "figure"
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
        raise SourceError(f"{file}: no question column (looked for {', '.join(_DEFAULT_COLUMNS['question'])}); "
                          f"map one with source.columns.question; columns are: {', '.join(keys)}")
    if hygiene.require_answer and mapping["answer"] is None and mapping["tests"] is None:
        raise SourceError(f"{file}: no answer column (looked for {', '.join(_DEFAULT_COLUMNS['answer'])}); "
                          "map one with source.columns.answer or set source.hygiene.require_answer: false")
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


# -- readers -----------------------------------------------------------------------------------
def _rows(src: SourceConfig) -> Iterator[Row]:
    kind = src.kind
    if kind == "builtin":
        from tracesynth import data

        path = data.verified_path(data.get(src.name or "", src.split))
        return _jsonl_rows(path, src)
    if kind == "gym":
        return _gym_rows(src)
    if kind == "hub":
        return _hub_rows(src)
    if not src.path:
        raise SourceError(f"source.path: required for kind {kind}")
    path = Path(src.path).expanduser()
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory (source.path)")
    if kind == "jsonl":
        return _jsonl_rows(path, src)
    if kind == "csv":
        return _buffer_shuffle(_csv_rows(path), src)
    if kind == "parquet":
        return _buffer_shuffle(_parquet_rows(path), src)
    if kind == "disk":
        return _disk_rows(path, src)
    raise SourceError(f"source.kind: unknown kind {kind!r}")


def _jsonl_rows(path: Path, src: SourceConfig) -> Iterator[Row]:
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        if not src.shuffle:
            for lineno, raw in enumerate(fh, 1):
                if raw.strip():
                    yield f"{path}:{lineno}", _json_row(raw, path, lineno)
            return
        offsets, linenos = array("q"), array("q")  # 16 bytes per row: exact shuffle without the rows
        pos = 0
        for lineno, raw in enumerate(fh, 1):
            if raw.strip():
                offsets.append(pos)
                linenos.append(lineno)
            pos += len(raw)
        order = list(range(len(offsets)))
        random.Random(src.seed).shuffle(order)
        for i in order:
            fh.seek(offsets[i])
            yield f"{path}:{linenos[i]}", _json_row(fh.readline(), path, linenos[i])


def _json_row(raw: bytes, path: Path, lineno: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise SourceError(f"{path}:{lineno}: invalid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise SourceError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _csv_rows(path: Path) -> Iterator[Row]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                if None in row:
                    raise SourceError(f"{path}:{reader.line_num}: more values than header columns")
                yield f"{path}:{reader.line_num}", row
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise SourceError(f"{path}: invalid CSV ({exc})") from None


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    for file in files:
        try:
            pf = pq.ParquetFile(file)
            n = 0
            for batch in pf.iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    n += 1
                    yield f"{file} row {n}", row
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"{file}: cannot read Parquet ({str(exc).splitlines()[0]})") from None


def _disk_rows(path: Path, src: SourceConfig) -> Iterator[Row]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise SourceError(f"{path}: not a dataset saved with save_to_disk ({str(exc).splitlines()[0]})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        split = src.split or (splits[0] if len(splits) == 1 else None)
        if split not in ds:
            raise SourceError(f"{path}: source.split must be one of {', '.join(splits)}")
        ds = ds[split]
    if src.shuffle:
        ds = ds.shuffle(seed=src.seed)
    for i, row in enumerate(ds, 1):
        yield f"{path} row {i}", row


def _hub_rows(src: SourceConfig) -> Iterator[Row]:
    import datasets

    ds = datasets.load_dataset(src.name, split=src.split or "train", streaming=True, **src.config)
    if src.shuffle:
        ds = ds.shuffle(seed=src.seed, buffer_size=src.shuffle_buffer)
    for i, row in enumerate(ds, 1):
        yield f"hub {src.name} row {i}", row


def _gym_rows(src: SourceConfig) -> Iterator[Row]:
    try:
        import reasoning_gym
    except ImportError:
        raise SourceError("source.kind gym needs reasoning-gym: pip install 'tracesynth[gym]'") from None
    size = src.size if src.size is not None else (src.limit or 0) + src.offset
    if size <= 0:
        raise SourceError(f"source.size: give how many {src.name} problems to generate")
    try:
        ds = reasoning_gym.create_dataset(src.name, size=size, seed=src.seed, **src.config)
    except Exception as exc:  # reasoning-gym raises ValueError/KeyError/AssertionError/TypeError for bad input
        raise SourceError(f"source: reasoning-gym task {src.name!r}: {type(exc).__name__}: {exc}") from None
    order = list(range(size))
    if src.shuffle:
        random.Random(src.seed).shuffle(order)
    gym_config = {"size": size, "seed": src.seed, "config": src.config}
    for i in order:
        entry = ds[i]
        yield f"gym {src.name} #{i}", {
            "question": entry["question"],
            "answer": entry["answer"],
            "gym_task": src.name,
            "gym_entry": _jsonable(entry),
            "gym_index": i,
            "gym_config": gym_config,
        }


def _jsonable(value: Any) -> Any:
    """A JSON-round-trippable copy (tuples → lists, sets → sorted lists, other objects → str)."""
    def default(o: Any) -> Any:
        return sorted(o, key=str) if isinstance(o, (set, frozenset)) else str(o)

    return json.loads(json.dumps(value, default=default))


def _buffer_shuffle(rows: Iterator[Row], src: SourceConfig) -> Iterator[Row]:
    if not src.shuffle:
        yield from rows
        return
    rng = random.Random(src.seed)
    buf: list[Row] = []
    for row in rows:
        if len(buf) < src.shuffle_buffer:
            buf.append(row)
            continue
        i = rng.randrange(len(buf))
        yield buf[i]
        buf[i] = row
    rng.shuffle(buf)
    yield from buf


__all__ = ["FIELDS", "hygiene_reason", "iter_problems", "source_label"]
