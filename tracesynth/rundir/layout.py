"""Where every file of a run folder lives, by name: the one place a file name of the run folder is typed.

    layout = RunLayout("runs/demo")
    layout.samples          # runs/demo/samples.jsonl
    layout.variant("verified").eval_json

A run folder holds the records of each stage (JSONL), one summary per stage (JSON), the dataset,
the student and the report. :data:`RECORD_FILES` says which model and key each JSONL file has;
:func:`is_run_folder` says whether an existing folder is one of ours (so a typo'd ``run_dir`` never
writes into a folder of someone else's files). This module names paths; it reads and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# JSONL record files: name -> (record model name in tracesynth.records, unique key or None)
RECORD_FILES: dict[str, tuple[str | None, str | tuple[str, ...] | None]] = {
    "problems": ("Problem", "id"),
    "samples": ("Sample", "id"),
    "failures": ("Sample", None),  # item errors: one row per failed attempt group, an id may repeat
    "verdicts": ("Verdict", ("sample_id", "verifier")),
    "traces": ("Trace", "sample_id"),
    "eval_items": (None, "id"),
    "batches": (None, None),  # the batch event log
    # the model passes of tracesynth.stages.ask: one row per record done, item errors beside it
    "rewrites": (None, "id"),  # keyed by sample id (samples.jsonl is never touched)
    "rewrite_failures": (None, None),
    "domains": (None, "id"),  # keyed by problem id
    "classify_failures": (None, None),
}
# model passes (tracesynth.stages.ask): pass name -> (its rows, its item errors)
PASS_FILES: dict[str, tuple[str, str]] = {
    "rewrite": ("rewrites", "rewrite_failures"),
    "classify": ("domains", "classify_failures"),
}
# what a variant folder links from the run it belongs to (it shares the harvest and the verdicts)
SHARED_WITH_VARIANTS = (
    "problems.jsonl",
    "samples.jsonl",
    "failures.jsonl",
    "verdicts.jsonl",
    "harvest.json",
    "verify.json",
    "rewrites.jsonl",  # export reads them in the variant folder
    "domains.jsonl",  # curate reads them in the variant folder
)
_OURS = {f"{n}.jsonl" for n in RECORD_FILES} | {
    "manifest.json",
    "recipe.json",
    ".lock",
    "harvest.json",
    "verify.json",
    "curate.json",
    "eval.json",
    "report.md",
    "dataset",
    "student",
    "plots",
    "variants",
    "shards",
    "batches",
    "receipt.json",
    "rewrite.json",
    "classify.json",
}


@dataclass(frozen=True)
class RunLayout:
    """The named paths of one run folder."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def jsonl(self, name: str) -> Path:
        return self.root / f"{name}.jsonl"

    # -- records (append-only JSONL) ----------------------------------------------------------
    @property
    def problems(self) -> Path:
        return self.jsonl("problems")

    @property
    def samples(self) -> Path:
        return self.jsonl("samples")

    @property
    def failures(self) -> Path:
        return self.jsonl("failures")

    @property
    def verdicts(self) -> Path:
        return self.jsonl("verdicts")

    @property
    def traces(self) -> Path:
        return self.jsonl("traces")

    @property
    def eval_items(self) -> Path:
        return self.jsonl("eval_items")

    @property
    def batch_log(self) -> Path:
        return self.jsonl("batches")

    @property
    def rewrites(self) -> Path:
        return self.jsonl("rewrites")

    @property
    def domains(self) -> Path:
        return self.jsonl("domains")

    def pass_json(self, name: str) -> Path:
        """The summary of a model pass (``rewrite.json``, ``classify.json``)."""
        return self.root / f"{name}.json"

    # -- summaries (JSON, written atomically) --------------------------------------------------
    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def recipe_json(self) -> Path:
        return self.root / "recipe.json"

    @property
    def harvest_json(self) -> Path:
        return self.root / "harvest.json"

    @property
    def verify_json(self) -> Path:
        return self.root / "verify.json"

    @property
    def curate_json(self) -> Path:
        return self.root / "curate.json"

    @property
    def eval_json(self) -> Path:
        return self.root / "eval.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    # -- folders ---------------------------------------------------------------------------------
    @property
    def batch_dir(self) -> Path:
        return self.root / "batches"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def student(self) -> Path:
        return self.root / "student"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    def shard(self, index: int, count: int) -> RunLayout:
        return RunLayout(self.shards / f"{index}-of-{count}")

    @property
    def variants(self) -> Path:
        return self.root / "variants"

    def variant(self, name: str) -> RunLayout:
        return RunLayout(self.variants / name)

    def variant_layouts(self) -> list[tuple[str, RunLayout]]:
        """(name, layout) of every variant folder, sorted by name."""
        if not self.variants.is_dir():
            return []
        return [(d.name, RunLayout(d)) for d in sorted(self.variants.iterdir()) if d.is_dir()]


# files inside dataset/ and student/ that other stages read
TEMPLATE_JSON = "template.json"  # system prompt, template, thinking delimiters (export → sft → eval)
TRAIN_JSON = "train.json"  # what sft did (student/train.json)


def is_run_folder(path: str | Path) -> bool:
    """True when ``path`` does not exist, is empty, or already holds a file a run folder holds."""
    p = Path(path)
    if not p.exists():
        return True
    if not p.is_dir():
        return False
    names = {e.name for e in p.iterdir()}
    return not names or bool(names & _OURS)


__all__ = [
    "PASS_FILES",
    "RECORD_FILES",
    "SHARED_WITH_VARIANTS",
    "TEMPLATE_JSON",
    "TRAIN_JSON",
    "RunLayout",
    "is_run_folder",
]
