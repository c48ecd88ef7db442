"""`tracesynth rewrite RECIPE`: Sky-T1's reformatting of every kept trace into thought / solution blocks.

Sky-T1 (NovaSky-AI/SkyThought recipes/sky-t1-preview README, step 2; scripts/convert_format.py) had
GPT-4o-mini rewrite each QwQ reply into ``<|begin_of_thought|>…<|end_of_thought|>``
``<|begin_of_solution|>…<|end_of_solution|>`` with the prompt of scripts/prompts.py (shipped as
prompts/sky_t1_rewrite.txt), then scored the *rewritten* replies (step 3) and trained on those that
passed (scripts/convert_to_data.py).

Here the pass runs after verify, before curate, on the samples that passed verification (the
``verify.keep`` policy; every untruncated sample with ``curate.keep: all``): rewriting a trace the
rejection sampling drops would be paid for nothing, and the rewrite is scored again anyway. A
rewrite is kept (a row of rewrites.jsonl keyed by sample id; samples.jsonl is never touched) only if

* the reply has both blocks, closed, with a non-empty thought and solution
  (:func:`tracesynth.thinking.split_sky_t1`), and
* the rewritten answer still passes the problem's verifiers under ``verify.keep`` (the same ones
  verify ran, minus ``judge``: an LLM judge is not asked again from inside this pass), and its last
  ``\\boxed{}`` (when the original had one) is unchanged.

Anything else is an item error of that sample (rewrite_failures.jsonl) and the original trace is
used. Export puts a rewritten trace in the training text (:mod:`.apply`). Money, resume and the
endpoint are the shared engine's (:mod:`tracesynth.stages.ask`). This module decides what is asked
and what is kept; it does not export.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from tracesynth.config import Recipe
from tracesynth.errors import UserError
from tracesynth.records import Problem, Sample, Verdict
from tracesynth.rundir.live import live_samples
from tracesynth.rundir.store import RunStore
from tracesynth.stages.ask import Job, PassResult, Unusable, load_prompt, pass_prices, run_pass
from tracesynth.teacher.parse import Choice
from tracesynth.thinking import SOLUTION, THOUGHT, split_sky_t1

NAME = "rewrite"


def source_text(sample: Sample) -> str:
    """What is sent for rewriting: the whole reply, as QwQ's ``content`` was (reasoning first when separate)."""
    if sample.reasoning:
        return f"{sample.reasoning.strip()}\n\n{(sample.content or '').strip()}".strip()
    return (sample.content or "").strip()


def parse_rewrite_text(text: str) -> tuple[str, str]:
    """(thought, solution) of a rewrite given as text; :class:`Unusable` when a block is missing, open or empty."""
    missing = [m for m in (THOUGHT.start, THOUGHT.end, SOLUTION.start, SOLUTION.end) if m not in text]
    if missing:
        raise Unusable("no_blocks", f"the rewrite lacks {missing[0]}")
    parts = split_sky_t1(text)
    if parts is None or parts[0] is None:
        raise Unusable("no_blocks", "no thought block could be read")
    return _checked(parts[0], parts[1], parts[2])


def parse_rewrite(choice: Choice) -> tuple[str, str]:
    """(thought, solution) of a rewriting model's reply. The client already split inline Sky-T1 blocks
    into reasoning and answer (flag ``sky_t1_blocks``, tracesynth.teacher.parse); a reply that kept its
    own reasoning apart (a reasoning model) must carry the blocks in its answer."""
    if "sky_t1_blocks" in choice.flags:
        return _checked(choice.reasoning or "", choice.content or "", choice.flags)
    return parse_rewrite_text(choice.content or "")


def _checked(thought: str, solution: str, flags: list[str]) -> tuple[str, str]:
    open_ = [f for f in flags if f.startswith("unclosed")]
    if open_:
        raise Unusable("no_blocks", f"a block is not closed ({open_[0]})")
    if not thought.strip() or not solution.strip():
        raise Unusable("empty_block", "the thought or the solution is empty")
    return thought.strip(), solution.strip()


def _last_boxed(sample: Sample) -> str | None:
    from tracesynth.stages.verify.verifiers.answer import answer_text, boxed

    found = boxed(answer_text(sample))
    return "".join(found[-1].split()) if found else None


class _Checker:
    """Re-verifies a rewritten answer with the verifiers verify ran on the original."""

    def __init__(self, recipe: Recipe) -> None:
        from tracesynth.stages.verify.stage import verifier_options

        self.recipe = recipe
        self.options = verifier_options(recipe)

    def check(self, problem: Problem, original: Sample, thought: str, solution: str) -> list[Verdict]:
        from tracesynth.stages.verify.registry import keep, score
        from tracesynth.stages.verify.stage import verifiers_for

        new = original.model_copy(update={"reasoning": thought, "content": solution})
        names = [n for n in verifiers_for(self.recipe, problem) if n != "judge"]
        verdicts = score(problem, new, names, self.options)
        if names and not keep(verdicts, self.recipe.verify.keep):
            why = "; ".join(f"{v.verifier}: {v.status} {v.tag}".strip() for v in verdicts if v.status != "pass")
            raise Unusable("answer_changed", f"the rewrite no longer passes verification ({why})")
        before, after = _last_boxed(original), _last_boxed(new)
        if before is not None and after != before:
            raise Unusable("answer_changed", f"the rewrite changed the boxed answer ({before!r} -> {after!r})")
        return verdicts


def kept_samples(store: RunStore, recipe: Recipe) -> Iterator[Sample]:
    """The samples the rewrite is for: passing verification (see the module docstring), in file order."""
    from tracesynth.stages.verify.registry import keep

    weak = recipe.curate.select.weak_verifier
    verdicts: dict[str, list[Verdict]] = defaultdict(list)
    if store.layout.verdicts.exists():
        for v in store.verdicts.iter():
            if v.verifier != weak:
                verdicts[v.sample_id].append(v)
    everything = recipe.curate.keep == "all"
    for s in live_samples(store.samples):  # streamed: only the verdicts are held
        if s.finish_reason != "length" and (everything or keep(verdicts.get(s.id, []), recipe.verify.keep)):
            yield s


def rewrite(recipe: Recipe) -> PassResult:
    """Rewrite every kept trace not rewritten yet (resumable, cost-capped); writes rewrites.jsonl and rewrite.json."""
    cfg = recipe.rewrite
    if not cfg.enabled:
        raise UserError("rewrite.enabled is false: set it to true in the recipe (or --set rewrite.enabled=true)")
    prompt = load_prompt(NAME, cfg.prompt, ("content",))
    pass_prices(NAME, cfg)  # a cap that cannot be computed is refused before anything is read
    with RunStore(recipe.run_dir) as store:
        layout = store.layout
        if not layout.samples.exists():
            raise UserError(f"{layout.samples}: no samples; run `tracesynth harvest` first")
        if recipe.curate.keep != "all" and not layout.verdicts.exists():
            raise UserError(f"{layout.verdicts}: no verdicts; run `tracesynth verify` first")
        problems = {p.id: p for p in store.problems.iter()}
        checker = _Checker(recipe)

        def job(sample: Sample, problem: Problem) -> Job:
            def judge(choice: Choice) -> dict[str, Any]:
                thought, solution = parse_rewrite(choice)
                verdicts = checker.check(problem, sample, thought, solution)
                return {
                    "reasoning": thought,
                    "content": solution,
                    "verdicts": [{"verifier": v.verifier, "status": v.status, "answer": v.answer} for v in verdicts],
                }

            return Job(
                sample.id,
                prompt.messages(content=source_text(sample)),
                judge,
                meta={"problem_id": sample.problem_id},
            )

        def jobs() -> Iterator[Job]:
            for s in kept_samples(store, recipe):
                p = problems.get(s.problem_id)
                if p is not None:
                    yield job(s, p)

        with store.stage_run(NAME) as mark:
            result = run_pass(NAME, cfg, store, jobs())
            mark.update(outcome=result.status, done=result.done, errors=result.errors, spent_usd=result.spent_usd)
    return result


__all__ = ["kept_samples", "parse_rewrite", "parse_rewrite_text", "rewrite", "source_text"]
