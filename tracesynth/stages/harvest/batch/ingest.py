"""Batch result lines → rows, through the harvest's one writer (:mod:`tracesynth.stages.harvest.writer`).

A result line (OpenAI's output and error files, and ``vllm run-batch`` output) looks like::

    {"id": "...", "custom_id": "<sample id>",
     "response": {"status_code": 200, "request_id": "...", "body": {<chat.completion>}},
     "error": null}

* ``status_code`` 200 with a completion body → the body goes through
  :func:`tracesynth.teacher.parse.parse_chat` (exactly as online) and becomes a Sample, priced at
  the batch price, its usage checked as online;
* any other status, an ``error`` object (vLLM: a string or an ``ErrorResponse``), or a 200 body that
  is not a usable completion → a failure row with the reason and a kind (``server_error``,
  ``bad_request``, ``malformed``, ...): it counts toward ``teacher.item_retries`` like an online error;
* ``batch_expired`` / ``batch_cancelled`` errors (the request never ran) are not failures: the sample
  simply becomes pending again;
* a ``custom_id`` that no map knows is counted as ``unknown`` and skipped; a sample id already in
  ``samples.jsonl`` is counted as ``duplicate`` and skipped — ingesting the same file twice adds
  nothing. A torn last line (a killed writer) is skipped; a bad line before it is a
  :class:`~tracesynth.errors.DataError` naming file and line.

This module reads result files; it downloads nothing (see submit.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracesynth.errors import DataError
from tracesynth.stages.harvest.writer import Writer
from tracesynth.teacher.parse import MalformedResponse, parse_chat
from tracesynth.teacher.retry import BATCH_ERROR, kind_of_status

NOT_RUN = frozenset({"batch_expired", "batch_cancelled"})
Lookup = Callable[[str], "dict[str, Any] | None"]


def _message(err: Any) -> str:
    """A one-line reason from an error object in any of the shapes servers use."""
    if isinstance(err, str):
        return " ".join(err.split())[:300]
    if isinstance(err, dict):
        inner = err.get("error")
        if isinstance(inner, (dict, str)):
            return _message(inner)
        msg = err.get("message") or err.get("code") or json.dumps(err)[:300]
        return " ".join(str(msg).split())[:300]
    return "no reason given"


def _code(err: Any) -> str | None:
    if isinstance(err, dict):
        inner = err.get("error")
        if isinstance(inner, dict):
            return _code(inner)
        code = err.get("code")
        return code if isinstance(code, str) else None
    return None


def ingest_file(
    writer: Writer, path: Path, lookup: Lookup, tag: str, meta: dict[str, Any] | None = None
) -> Counter[str]:
    """Take in every result line of ``path`` (see the module docstring); return counts by outcome."""
    counts: Counter[str] = Counter()
    before = Counter(writer.counts)
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                _line(writer, lineno, raw, path, lookup, tag, meta or {}, counts)
            except DataError:
                if raw.endswith(b"\n"):
                    raise
                counts["torn_last_line"] += 1  # only the last line can lack its newline
    for k, v in writer.counts.items():
        if v - before.get(k, 0):
            counts[k] += v - before.get(k, 0)
    return counts


def _line(
    writer: Writer,
    lineno: int,
    raw: bytes,
    path: Path,
    lookup: Lookup,
    tag: str,
    meta: dict[str, Any],
    counts: Counter[str],
) -> None:
    if not raw.strip():
        return
    try:
        obj = json.loads(raw)
    except ValueError:
        raise DataError(f"{path}:{lineno}: not a JSON result line") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str):
        raise DataError(f"{path}:{lineno}: a result line needs a string custom_id")
    entry = lookup(obj["custom_id"])
    if entry is None:
        counts["unknown"] += 1
        return
    if entry["id"] in writer.samples.keys:
        counts["duplicate"] += 1
        return
    resp, err = obj.get("response"), obj.get("error")
    status = resp.get("status_code") if isinstance(resp, dict) else None
    body = resp.get("body") if isinstance(resp, dict) else None
    if status == 200 and isinstance(body, dict) and not err:
        try:
            choices, usage, served = parse_chat(body)
        except MalformedResponse as exc:
            writer.failure(entry, exc.kind, str(exc), tag=tag, meta=meta)
            return
        writer.sample(entry, choices[0], usage, served=served, tag=tag, meta=meta)
        return
    code = _code(err) or _code(body)
    if code in NOT_RUN:
        counts["not_run"] += 1
        return
    kind = kind_of_status(status) if isinstance(status, int) and status != 200 else (code or BATCH_ERROR)
    reason = _message(err) if err else _message(body) if body else f"HTTP {status}"
    writer.failure(entry, kind, f"{f'HTTP {status}: ' if status else ''}{reason}", tag=tag, meta=meta)


__all__ = ["NOT_RUN", "ingest_file"]
