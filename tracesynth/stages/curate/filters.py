"""Per-sample curation filters: the keep policy over verdicts, truncation, and token lengths.

* Keep policy over the verdicts of one sample: ``all`` (every verdict passes), ``any`` or
  ``majority`` — :func:`tracesynth.stages.verify.registry.keep` when the verify package provides it, else the
  same rules here (:func:`local_keep`). ``unverifiable`` never counts as a pass, a sample with no
  verdict is never passing, and ``finish_reason == "length"`` is never a pass.
* Token lengths: with ``curate.tokenizer`` (a ``tokenizer.json`` or a folder holding one — the
  student's), texts are counted with the ``tokenizers`` library. Without it the documented
  approximation is the teacher's own usage counts (``completion_tokens`` for the answer,
  ``prompt_tokens`` for the prompt) and, where an endpoint reported none, the estimate of
  :mod:`tracesynth.accounting.tokens`.

This module decides about single samples; grouping by problem happens in stage.py and select.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tracesynth.accounting.tokens import CHARS_PER_TOKEN, text_tokens
from tracesynth.errors import ConfigError
from tracesynth.records import Sample, Verdict

KeepFn = Callable[[Sequence[Verdict], str], bool]


def local_keep(verdicts: Sequence[Verdict], policy: str) -> bool:
    """all / any / majority over pass verdicts; unverifiable and fail are not passes."""
    if not verdicts:
        return False
    passes = sum(v.status == "pass" for v in verdicts)
    if policy == "all":
        return passes == len(verdicts)
    if policy == "any":
        return passes > 0
    if policy == "majority":
        return passes * 2 > len(verdicts)
    raise ConfigError(f"verify.keep: unknown policy {policy!r} (all, any, majority)")


def keep_fn() -> KeepFn:
    """The verify package's ``keep`` when it exists (one rule for every stage), else :func:`local_keep`."""
    try:
        from tracesynth.stages.verify.registry import keep
    except ImportError:
        return local_keep
    return keep


def sample_passes(sample: Sample, verdicts: Sequence[Verdict], policy: str, keep: KeepFn) -> bool:
    return sample.finish_reason != "length" and keep(verdicts, policy)


def why_not_passing(sample: Sample, verdicts: Sequence[Verdict]) -> str:
    """The reason a sample failed the keep policy (for the report)."""
    if sample.finish_reason == "length":
        return "truncated"
    if not verdicts:
        return "no_verdict"
    if any(v.status == "fail" for v in verdicts):
        return "failed"
    return "unverifiable"


class TokenCounter:
    """Counts tokens with the student tokenizer, or approximates them (see module docstring)."""

    def __init__(self, tokenizer: str | None = None):
        self.source = f"approx: teacher usage counts, else {CHARS_PER_TOKEN:g} characters per token"
        self._tok = None
        if tokenizer:
            path = Path(tokenizer).expanduser()
            file = path / "tokenizer.json" if path.is_dir() else path
            if not file.is_file():
                raise ConfigError(f"curate.tokenizer: {tokenizer}: no tokenizer.json there")
            from tokenizers import Tokenizer

            try:
                self._tok = Tokenizer.from_file(str(file))
            except Exception as exc:  # tokenizers raises a bare Exception for bad files
                raise ConfigError(f"curate.tokenizer: {file}: not a tokenizers file ({exc})") from None
            self.source = f"tokenizer {file}"

    @property
    def exact(self) -> bool:
        return self._tok is not None

    def count(self, text: str, reported: int = 0) -> int:
        """Tokens in ``text``; ``reported`` is what the teacher said (used only when approximating)."""
        if self._tok is not None:
            return len(self._tok.encode(text, add_special_tokens=False).ids)
        if reported > 0:
            return reported
        return text_tokens(text)


def completion_text(sample: Sample) -> str:
    return (sample.reasoning or "") + (sample.content or "")


__all__ = ["KeepFn", "TokenCounter", "completion_text", "keep_fn", "local_keep", "sample_passes", "why_not_passing"]
