"""Batch harvesting: provider batch APIs, and offline ``vllm run-batch`` files (export, then ingest).

* **Provider batch API** — ``teacher.mode: batch`` or ``tracesynth harvest RECIPE --batch``. Hosted
  providers (OpenAI, Together, OpenRouter-style gateways, ...) run batch jobs within a completion
  window at about half the online price (``teacher.prices.batch_discount``) on a separate rate-limit
  pool. Files are split by ``teacher.batch.max_requests`` / ``max_bytes`` (defaults: OpenAI's 50,000
  requests and 200 MB per file). Every step is logged in ``<run>/batches.jsonl`` before the next one,
  so a kill at any point and a re-run resumes polling the same batch ids and never submits a sample
  twice. ``tracesynth batches RECIPE`` shows them; ``--cancel`` cancels them.
* **Offline vLLM** — vLLM's OpenAI server has no ``/v1/files`` or ``/v1/batches`` routes; its batch path
  is ``run_batch`` on the GPU box::

      tracesynth harvest RECIPE --export-batch out/          # writes out/<name>-e0001.jsonl ...
      python -m vllm.entrypoints.openai.run_batch -i out/<name>-e0001.jsonl -o results.jsonl \\
          --model MODEL_DIR --served-model-name <teacher.model> [--reasoning-parser deepseek_r1]
      tracesynth harvest RECIPE --ingest results.jsonl

  ``custom_id`` is the sample id, so results can arrive in any order, in several files, or twice.

Modules: files (batch input files and maps), state (the event log), submit (the files/batches API),
ingest (result lines → rows), run (the three entry points and ``batch_status``). Planning, rows and
the result are the harvest's own (plan.py, writer.py, result.py): one rule each for every mode.
"""
