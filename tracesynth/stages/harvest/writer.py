"""Batch results → Samples: the same normalisation, records and ledger as online harvesting.

A result line (OpenAI's output and error files, and ``vllm run-batch`` output) looks like::

    {"id": "...", "custom_id": "<sample id>",
     "response": {"status_code": 200, "request_id": "...", "body": {<chat.completion>}},
     "error": null}

* ``status_code`` 200 with a completion body → the body goes through
  :func:`tracesynth.teacher.parse.parse_chat` (reasoning from ``reasoning_content`` / ``reasoning`` /
  think tags, R1-distill closing tag, empty-think flag — exactly as online), and a :class:`Sample`
  is appended to ``samples.jsonl`` with its cost at the batch price, charged to the ledger
  (truncated and retried spend counted apart).
* any other status, an ``error`` object (vLLM: a string or an ``ErrorResponse``), or a 200 body that
  is not a completion → a failure row in ``failures.jsonl`` with the reason and a kind (``server_error``,
  ``bad_request``, ...): it counts toward ``teacher.item_retries`` like an online item error.
* ``batch_expired`` / ``batch_cancelled`` errors (the request never ran) are not failures: the sample
  simply becomes pending again.
* A ``custom_id`` that no map knows is counted as ``unknown`` and skipped; a sample id already in
  ``samples.jsonl`` is counted as ``duplicate`` and skipped — ingesting the same file twice adds
  nothing, and a failure row is never written twice for the same batch (rows carry
  ``metadata.batch``). A torn last line (a killed writer) is skipped; a bad line before it is a
  :class:`~tracesynth.errors.DataError` naming file and line.

This module writes records; it downloads nothing (see submit.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracesynth.accounting.prices import Ledger, Prices
from tracesynth.errors import DataError
from tracesynth.records import Sample, Usage
from tracesynth.rundir.store import JsonlStage, RunStore
from tracesynth.teacher.parse import MalformedResponse, parse_chat
from tracesynth.teacher.retry import kind_of_status

NOT_RUN = frozenset({"batch_expired", "batch_cancelled"})


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


class Ingestor:
    """Append results of one batch (or one results file) to the run store."""

    def __init__(self, store: RunStore, *, model: str, prices: Prices | None, ledger: Ledger, endpoint: str) -> None:
        self.samples: JsonlStage[Sample] = store.stage("samples", Sample, key="id")
        self.failures: JsonlStage[Sample] = store.stage("failures", Sample, key=None)
        self.model, self.prices, self.ledger, self.endpoint = model, prices, ledger, endpoint
        self._failed_keys: set[tuple[str, str]] | None = None

    def _failed(self) -> set[tuple[str, str]]:
        """(sample id, batch tag) of failure rows already written by batch ingestion."""
        if self._failed_keys is None:
            self._failed_keys = set()
            for row in self.failures.iter():
                tag = row.metadata.get("batch")
                if tag:
                    self._failed_keys.add((row.id, tag))
        return self._failed_keys

    def ingest_file(self, path: Path, lookup: Callable[[str], dict[str, Any] | None], tag: str,
                    meta: dict[str, Any] | None = None) -> Counter[str]:
        """Take in every result line of ``path`` (see module docstring); return counts by outcome."""
        counts: Counter[str] = Counter()
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    self._line(lineno, raw, path, lookup, tag, meta or {}, counts)
                except DataError:
                    if raw.endswith(b"\n"):
                        raise
                    counts["torn_last_line"] += 1  # only the last line can lack its newline
        return counts

    def _line(self, lineno: int, raw: bytes, path: Path, lookup: Callable[[str], dict[str, Any] | None], tag: str,
              meta: dict[str, Any], counts: Counter[str]) -> None:
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
        if entry["id"] in self.samples.keys:
            counts["duplicate"] += 1
            return
        resp, err = obj.get("response"), obj.get("error")
        status = resp.get("status_code") if isinstance(resp, dict) else None
        body = resp.get("body") if isinstance(resp, dict) else None
        if status == 200 and isinstance(body, dict) and not err:
            try:
                choices, usage, served = parse_chat(body)
            except MalformedResponse as exc:
                self.write_failure(entry, exc.kind, str(exc), counts, tag=tag, meta=meta)
                return
            self.write_sample(entry, choices[0], usage, counts, served=served, tag=tag, meta=meta)
            return
        code = _code(err) or _code(body)
        if code in NOT_RUN:
            counts["not_run"] += 1
            return
        kind = kind_of_status(status) if isinstance(status, int) and status != 200 else (code or "batch_error")
        reason = _message(err) if err else _message(body) if body else f"HTTP {status}"
        self.write_failure(entry, kind, f"{f'HTTP {status}: ' if status else ''}{reason}", counts, tag=tag, meta=meta)

    def write_sample(self, entry: dict[str, Any], choice: Any, usage: Usage, counts: Counter[str], *,
                     served: str | None = None, tag: str | None = None, meta: dict[str, Any] | None = None,
                     endpoint: str | None = None, latency_s: float = 0.0) -> Sample:
        """Append the Sample of one answered request (``entry`` is its map entry) and charge the ledger."""
        cost = self.prices.cost(usage) if self.prices else 0.0
        md: dict[str, Any] = {**(meta or {}), **({"batch": tag} if tag else {}), **(entry.get("meta") or {})}
        if entry.get("max_tokens"):
            md["max_tokens"] = entry["max_tokens"]
        if choice.flags:
            md["flags"] = choice.flags
        if served and served != self.model:
            md["served_model"] = served
        s = Sample(id=entry["id"], problem_id=entry["problem_id"], index=entry["index"], model=self.model,
                   reasoning=choice.reasoning, content=choice.content, finish_reason=choice.finish_reason, usage=usage,
                   latency_s=round(latency_s, 4), cost_usd=cost, endpoint=endpoint or self.endpoint,
                   attempt=entry.get("attempt", 1), supersedes=entry.get("supersedes"), metadata=md)
        self.samples.append(s)
        truncated = choice.finish_reason == "length"
        self.ledger.charge(usage, cost, truncated=truncated, retried=entry.get("supersedes") is not None)
        counts["new"] += 1
        if truncated:
            counts["truncated"] += 1
        return s

    def write_failure(self, entry: dict[str, Any], kind: str, reason: str, counts: Counter[str], *,
                      tag: str | None = None, meta: dict[str, Any] | None = None, endpoint: str | None = None,
                      billed_usd: float = 0.0) -> None:
        """Append a failure row; with a batch ``tag``, at most one per (sample id, batch)."""
        if tag is not None:
            key = (entry["id"], tag)
            if key in self._failed():
                counts["duplicate"] += 1
                return
            self._failed().add(key)
        md = {**(meta or {}), **({"batch": tag} if tag else {}), **(entry.get("meta") or {})}
        if billed_usd:
            md["possibly_billed_usd"] = billed_usd
        self.failures.append(Sample(
            id=entry["id"], problem_id=entry["problem_id"], index=entry["index"], model=self.model, error=reason,
            error_kind=kind, endpoint=endpoint or self.endpoint, attempt=entry.get("attempt", 1),
            supersedes=entry.get("supersedes"), metadata=md))
        counts["failed"] += 1
        counts[f"error:{kind}"] += 1


__all__ = ["NOT_RUN", "Ingestor"]
