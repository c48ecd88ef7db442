"""Harvest for less: provider batch APIs, offline ``vllm run-batch`` files, and re-asking truncated samples.

Three ways to run the same pending requests, on the same run folder, records, ledger and resume rules
as online harvesting (tracesynth.harvest):

* **Provider batch API** — ``teacher.mode: batch`` or ``tracesynth harvest RECIPE --batch``
  (:func:`harvest_batch`). Hosted providers (OpenAI, Together, OpenRouter-style gateways, ...) run
  batch jobs within a completion window at about half the online price (``teacher.prices.batch_discount``,
  default 0.5) on a separate rate-limit pool. Files are split by ``teacher.batch.max_requests`` /
  ``max_bytes`` (defaults: OpenAI's 50,000 requests and 200 MB per file). Every step is logged in
  ``<run>/batches.jsonl`` before the next one, so a kill at any point and a re-run resumes polling
  the same batch ids and never submits a sample twice. ``tracesynth batches RECIPE`` shows them;
  ``--cancel`` cancels them (the partial results are ingested by the next ``harvest --batch``).
* **Offline vLLM** — vLLM's OpenAI server has **no** ``/v1/files`` or ``/v1/batches`` routes; its batch
  path is the ``vllm run-batch`` command on the GPU box::

      tracesynth harvest RECIPE --export-batch out/          # writes out/<name>-e0001.jsonl ...
      vllm run-batch -i out/<name>-e0001.jsonl -o results.jsonl --model MODEL \\
          [--served-model-name <teacher.model>] [--reasoning-parser deepseek_r1]
      tracesynth harvest RECIPE --ingest results.jsonl

  (:func:`export_batch`, :func:`ingest_results`). Each output line is
  ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``; ``custom_id``
  is the sample id, so results can arrive in any order, in several files, or twice. The request
  ``model`` is ``teacher.model``: serve the model under that name (``--served-model-name``). Without a
  reasoning parser R1-style models return content with only a closing ``</think>``; that is split
  correctly (tracesynth.teacher.parse).
* **Re-asking what was cut short** — ``tracesynth harvest RECIPE --retry-truncated --set
  teacher.sampling.max_tokens=N`` (online, :func:`tracesynth.truncated.retry_truncated`, or with
  ``--batch`` / ``--export-batch`` through the paths above) re-asks only this recipe's live samples with
  ``finish_reason == "length"`` that ran with a smaller budget. The new answer is a new row whose
  ``supersedes`` names the old one; the truncated row stays as history and its cost stays in the
  ledger. Complete samples are never asked again (sample ids exclude ``max_tokens``). Stages that
  use answers read :func:`tracesynth.superseded.live_samples`.

Modules: plan (what to ask), files (batch input files and maps), state (the event log), submit
(openai files/batches calls, reconciliation), ingest (results → Samples), run (shared context, result,
progress), stage (the entry points), command (what the CLI flags do).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BatchHarvestResult": "tracesynth.stages.harvest.batch.context",
    "batch_status": "tracesynth.stages.harvest.batch.run",
    "export_batch": "tracesynth.stages.harvest.batch.run",
    "harvest_batch": "tracesynth.stages.harvest.batch.run",
    "ingest_results": "tracesynth.stages.harvest.batch.run",
}

__all__ = ["BatchHarvestResult", "batch_status", "export_batch", "harvest_batch", "ingest_results"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tracesynth.stages.harvest.batch' has no attribute {name!r}")
