"""Problems in: readers for every source kind, the shipped data sets, and the prompt templates.

* :mod:`.problems` — ``iter_problems``: rows of the recipe's sources → :class:`~tracesynth.records.Problem`
* :mod:`.readers` — jsonl, parquet, csv, disk, hub and reasoning-gym rows
* :mod:`.builtin` — the data sets shipped in ``data/`` (registry, checksums)
* :mod:`.prompts` — prompt templates (``prompts/``) rendered into messages
* :mod:`.resources` — where the shipped ``prompts/`` and ``data/`` folders are
"""
