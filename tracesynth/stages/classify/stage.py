"""`tracesynth classify RECIPE`: s1's domain label of every problem, one two-digit MSC2020 code each.

s1 (simplescaling/s1 data/featurization.py, ``do_domain_classification`` / ``upload_domain``) asked
Claude 3.5 Sonnet, with the system prompt and the "## Question / ## Classification rubrics" user
prompt shipped as prompts/msc_classify.txt, to end its reply with the two-digit code of the
question's subject among the rubrics of data/msc.json (shipped as data/msc2020.json); it read the
last two characters of the reply as the code and stored the class's *title* as the question's
``domain`` — the column its diversity selection draws over.

Here: every problem of problems.jsonl not labelled yet is asked (s1 labelled its whole pool before
filtering); the code is the two digits the reply ends with (trailing punctuation and markup
allowed), it must be a class of the list, and the row of domains.jsonl (keyed by problem id) keeps
code and title. A reply without one is an item error (classify_failures.jsonl) and the problem
keeps its source domain. :func:`~.labels.domains` is what curate reads. Money, resume and the endpoint are
the shared engine's (:mod:`tracesynth.stages.ask`). This module labels; it does not select.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from tracesynth.config import Recipe
from tracesynth.errors import DataError, UserError
from tracesynth.records import Problem
from tracesynth.rundir.store import RunStore
from tracesynth.sources.resources import data_dir
from tracesynth.stages.ask import Job, PassResult, Unusable, load_prompt, pass_prices, run_pass
from tracesynth.stages.classify.labels import domains
from tracesynth.teacher.parse import Choice

NAME = "classify"
MSC_FILE = "msc2020.json"
_CODE_AT_END = re.compile(r"(\d{2})[\s.*_`)\]]*$")


@cache
def msc_classes() -> dict[str, dict[str, Any]]:
    """``{code: class}`` of the shipped MSC2020 list (code, title, descriptions, prompt)."""
    path = data_dir() / MSC_FILE
    try:
        codes = json.loads(path.read_text(encoding="utf-8"))["codes"]
        return {str(c["code"]): c for c in codes}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not the shipped MSC list ({type(exc).__name__}); reinstall tracesynth") from None


def rubrics() -> str:
    """The classification rubrics s1 sent: every class's prompt, separated by blank lines."""
    return "\n\n".join(c["prompt"] for c in msc_classes().values())


def parse_code(text: str) -> tuple[str, str]:
    """(code, title) the reply ends with; :class:`Unusable` when it ends on no known code."""
    tail = text.strip()
    m = _CODE_AT_END.search(tail)
    if m is None:
        raise Unusable("unparseable", f"the reply does not end with a two-digit code: {tail[-80:]!r}")
    code = m.group(1)
    cls = msc_classes().get(code)
    if cls is None:
        raise Unusable("unknown_code", f"{code} is not a class of {MSC_FILE}")
    return code, str(cls["title"])


def question_of(problem: Problem) -> str:
    if problem.prompt:
        return problem.prompt
    users = [m.get("content") for m in problem.messages or [] if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def classify(recipe: Recipe) -> PassResult:
    """Label every problem not labelled yet (resumable, cost-capped); writes domains.jsonl and classify.json."""
    cfg = recipe.classify
    if not cfg.enabled:
        raise UserError("classify.enabled is false: set it to true in the recipe (or --set classify.enabled=true)")
    prompt = load_prompt(NAME, cfg.prompt, ("question", "rubrics"))
    pass_prices(NAME, cfg)  # a cap that cannot be computed is refused before anything is read
    text = rubrics()
    with RunStore(recipe.run_dir) as store:
        if not store.layout.problems.exists():
            raise UserError(f"{store.layout.problems}: no problems; run `tracesynth harvest` first")

        def judge(choice: Choice) -> dict[str, Any]:
            code, title = parse_code(choice.content or "")
            return {"label": code, "domain": title}

        def jobs() -> Iterator[Job]:
            for p in store.problems.iter():
                q = question_of(p)
                if q.strip():
                    yield Job(p.id, prompt.messages(question=q, rubrics=text), judge, meta={"source_domain": p.domain})

        with store.stage_run(NAME) as mark:
            result = run_pass(NAME, cfg, store, jobs())
            mark.update(outcome=result.status, done=result.done, errors=result.errors, spent_usd=result.spent_usd)
    return result


__all__ = ["classify", "domains", "msc_classes", "parse_code", "rubrics"]
