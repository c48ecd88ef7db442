"""The ``gym`` verifier: reasoning-gym's own ``score_answer`` for problems generated from it.

The problem must carry what the sources stage stores for reasoning-gym problems:
``metadata.gym_task`` (the dataset name), ``metadata.gym_entry`` (the generated entry: question,
answer, metadata) and, optionally, ``metadata.gym_config`` (``{"size", "seed", "config"}``, used to
rebuild the dataset the entry came from, since some scorers read their config). Without them the
verdict is ``unverifiable`` / ``no_reference``.

The answer is taken from the final answer region: the last ``\\boxed{}``, else the last
``<answer>...</answer>``, else the text after "final answer is", else (option
``whole_content``, default true) the whole answer part, stripped. A score of 1.0 (option
``threshold``) is a pass; anything lower is a fail (``partial`` when above 0, else
``mismatch``), and the score is kept on the verdict.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.verifiers.answer import answer_tag, answer_text, boxed, final_answer_phrase
from tracesynth.stages.verify.verifiers.base import Outcome, failed, unverifiable


@lru_cache(maxsize=64)
def _scorer(task: str, config_json: str) -> Any:
    import reasoning_gym

    cfg = json.loads(config_json)
    if not cfg:
        return reasoning_gym.get_score_answer_fn(task)
    kwargs = dict(cfg.get("config") or {})
    for key in ("size", "seed"):
        if cfg.get(key) is not None:
            kwargs[key] = cfg[key]
    return reasoning_gym.create_dataset(task, **kwargs).score_answer


def extract(text: str, whole_content: bool = True) -> tuple[str | None, str]:
    boxes = boxed(text)
    if boxes:
        return boxes[-1], "boxed"
    tag = answer_tag(text)
    if tag is not None:
        return tag, "answer_tag"
    phrase = final_answer_phrase(text)
    if phrase:
        return phrase.strip().rstrip("."), "final_answer"
    if whole_content and text.strip():
        return text.strip(), "content"
    return None, "none"


def verify_gym(problem: Problem, sample: Sample, options: dict[str, Any]) -> Outcome:
    task = problem.metadata.get("gym_task")
    entry = problem.metadata.get("gym_entry")
    if not task or not isinstance(entry, dict):
        return unverifiable("no_reference", "problem has no metadata.gym_task / metadata.gym_entry")
    answer, region = extract(answer_text(sample), bool(options.get("whole_content", True)))
    if answer is None:
        return failed("no_answer", "empty answer")
    config = problem.metadata.get("gym_config") or {}
    score_answer = _scorer(str(task), json.dumps(config, sort_keys=True, default=str))
    score = float(score_answer(answer, entry))
    threshold = float(options.get("threshold", 1.0))
    details = {"region": region, "task": task}
    if score >= threshold:
        return Outcome("pass", answer[:500], "", "", score, details)
    tag = "partial" if score > 0 else "mismatch"
    return failed(
        tag, f"reasoning-gym {task} scored {score:.3g} (pass needs {threshold:g})", answer[:500], score, **details
    )


__all__ = ["extract", "verify_gym"]
