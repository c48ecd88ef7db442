"""Verifiers: a plain dict registry, ``score`` for one sample, ``keep`` policies and the ``verify`` stage.

* :data:`VERIFIERS` maps a name to a function ``(problem, sample, options) -> Outcome``:
  ``math`` (math_verifier.py), ``choice``, ``gym``, ``code`` (runs in sandbox.py), ``judge``
  (LLM-as-judge) and ``format``. Register your own by adding to the dict, or name it in a
  recipe as ``"package.module:function"`` (imported where it runs, worker processes included).
* :func:`score` runs the named verifiers on one sample, synchronously, in this process, and
  returns one :class:`~tracesynth.records.Verdict` each. It never raises for a bad answer or a
  failing verifier: an exception is ``unverifiable`` / ``verifier_error`` with its message, and
  a verifier over its CPU budget (option ``timeout_s``, default 5 s) is ``unverifiable`` /
  ``timeout``. The budget uses SIGPROF, so it applies only when called from the main thread.
* :func:`keep` applies a recipe's ``verify.keep`` policy to one sample's verdicts.
* :func:`verify` is the stage (stage.py): reads the run folder, writes ``verdicts.jsonl`` and
  ``verify.json``, resumable, in a pool of worker processes.

The judge can back up rule-based verifiers: listed after them, with ``when: unverifiable``
(the default when other verifiers precede it) or ``when: not_pass``, it is only asked when
those verifiers (option ``fallback_for``, default: all listed before it) did not decide; its
verdict then replaces theirs in :func:`keep`. When it is not needed it records
``unverifiable`` / ``not_needed``, which :func:`keep` ignores.

This package is callable: ``tracesynth.verify(recipe)`` runs the stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tracesynth.errors import ConfigError
from tracesynth.plugins import lookup
from tracesynth.records import Problem, Sample, Verdict
from tracesynth.stages.verify.verifiers.base import Outcome, VerifierTimeout, cpu_deadline, unverifiable
from tracesynth.stages.verify.verifiers.choice import verify_choice
from tracesynth.stages.verify.verifiers.code import verify_code
from tracesynth.stages.verify.verifiers.format import verify_format
from tracesynth.stages.verify.verifiers.gym import verify_gym
from tracesynth.stages.verify.verifiers.judge import verify_judge
from tracesynth.stages.verify.verifiers.math import verify_math

Verifier = Callable[[Problem, Sample, dict[str, Any]], Outcome]

VERIFIERS: dict[str, Verifier] = {
    "math": verify_math,
    "choice": verify_choice,
    "gym": verify_gym,
    "code": verify_code,
    "judge": verify_judge,
    "format": verify_format,
}
KEEP_POLICIES = ("all", "any", "majority")
DEFAULT_TIMEOUT_S = 5.0


def get_verifier(name: str) -> Verifier | None:
    """A registered verifier, or ``"package.module:function"`` imported on first use (so custom
    verifiers named in a recipe also resolve inside worker processes). None when unknown."""
    return lookup(VERIFIERS, name)


def _judge_plan(names: Sequence[str], index: int, opts: dict[str, Any]) -> tuple[str, list[str]]:
    before = [n for n in names[:index] if n != "judge"]
    when = opts.get("when", "unverifiable" if before else "always")
    if when not in ("always", "unverifiable", "not_pass"):
        raise ValueError(f"judge: when must be always, unverifiable or not_pass, got {when!r}")
    return when, list(opts.get("fallback_for", before))


def _needed(when: str, covers: list[str], earlier: list[Verdict]) -> tuple[bool, str]:
    if when == "always" or not covers:
        return True, ""
    mine = [v for v in earlier if v.verifier in covers]
    undecided = [v for v in mine if v.status == "unverifiable" or (when == "not_pass" and v.status == "fail")]
    if undecided or not mine:
        return True, ""
    return False, ", ".join(f"{v.verifier}: {v.status}" for v in mine)


def score(
    problem: Problem, sample: Sample, verifiers: Sequence[str], options: dict[str, dict[str, Any]] | None = None
) -> list[Verdict]:
    """One verdict per verifier (judge-as-fallback may record ``not_needed``); never raises for bad answers."""
    options = options or {}
    out: list[Verdict] = []
    for i, name in enumerate(verifiers):
        opts = dict(options.get(name) or {})
        fn = get_verifier(name)
        details: dict[str, Any] = {}
        if fn is None:
            known = ", ".join(sorted(n for n in VERIFIERS if ":" not in n))
            res = unverifiable("verifier_error", f"unknown verifier {name!r} (known: {known}, or module:function)")
        elif sample.error is not None:
            why = f"the sample is an error row ({sample.error_kind}): {sample.error}"
            res = unverifiable("sample_error", why[:300])
        else:
            res = None
            if name == "judge":
                try:
                    when, covers = _judge_plan(verifiers, i, opts)
                except ValueError as exc:
                    when, covers, res = "always", [], unverifiable("verifier_error", str(exc))
                if res is None:
                    details = {"fallback_for": covers, "when": when} if when != "always" else {}
                    need, decided = _needed(when, covers, out)
                    if not need:
                        res = unverifiable("not_needed", f"rule-based verifiers decided ({decided})")
            if res is None:
                res = _call(fn, problem, sample, opts)
        assert res is not None
        out.append(
            Verdict(
                sample_id=sample.id,
                problem_id=problem.id,
                verifier=name,
                status=res.status,
                answer=res.answer,
                reason=res.reason,
                tag=res.tag,
                score=res.score,
                details={**res.details, **details},
            )
        )
    return out


def _call(fn: Verifier, problem: Problem, sample: Sample, opts: dict[str, Any]) -> Outcome:
    budget = float(opts.get("timeout_s", DEFAULT_TIMEOUT_S))
    try:
        with cpu_deadline(budget):
            res = fn(problem, sample, opts)
    except VerifierTimeout:
        return unverifiable("timeout", f"verifier used more than {budget:g}s of CPU (pathological input?)")
    except Exception as exc:  # a verifier bug or a library error is kept, never turned into a score
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return unverifiable("verifier_error", f"{type(exc).__name__}: {msg}"[:500])
    if res.status != "pass" and not res.tag:
        res.tag = "mismatch" if res.status == "fail" else "verifier_error"
    return res


def keep(verdicts: Sequence[Verdict], policy: str) -> bool:
    """Whether one sample's verdicts satisfy ``policy``: ``all`` | ``any`` | ``majority`` of passes.

    ``unverifiable`` is never a pass; a sample without verdicts is never kept; ``not_needed``
    verdicts are ignored; a decisive fallback judge verdict replaces the verdicts it backs up.
    """
    rows = [(v.verifier, v.status, v.tag, tuple(v.details.get("fallback_for") or ())) for v in verdicts]
    return keep_rows(rows, policy)


def keep_rows(rows: Sequence[tuple[str, str, str, tuple[str, ...]]], policy: str) -> bool:
    """:func:`keep` on (verifier, status, tag, fallback_for) tuples (cheap for whole runs)."""
    if policy not in KEEP_POLICIES:
        raise ConfigError(f"verify.keep: unknown policy {policy!r} ({', '.join(KEEP_POLICIES)})")
    active = [r for r in rows if r[2] != "not_needed"]
    replaced = {name for r in active if r[0] == "judge" and r[1] != "unverifiable" for name in r[3]}
    active = [r for r in active if r[0] not in replaced]
    if not active:
        return False
    passes = sum(r[1] == "pass" for r in active)
    if policy == "all":
        return passes == len(active)
    if policy == "any":
        return passes > 0
    return passes * 2 > len(active)


__all__ = [
    "KEEP_POLICIES",
    "VERIFIERS",
    "Outcome",
    "Verifier",
    "get_verifier",
    "keep",
    "keep_rows",
    "score",
]
