"""Build run folders (problems, samples, verdicts) for curation and export tests without a teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracesynth.config import PromptConfig, Recipe, SamplingConfig
from tracesynth.records import Problem, Sample, Usage, Verdict, sample_id
from tracesynth.rundir.store import JsonlFile
from tracesynth.sources.prompts import template_hash

MODEL = "teacher-x"
N = 8  # teacher.n of the test recipes: up to 8 samples per problem are current


def sample(
    pid: str,
    index: int,
    *,
    status: str | list[str] = "pass",
    reasoning: str = "think",
    content: str = "",
    finish: str = "stop",
    tokens: int = 0,
    model: str = MODEL,
    cost: float = 0.001,
) -> dict[str, Any]:
    statuses = [status] if isinstance(status, str) else status
    return {
        "pid": pid,
        "index": index,
        "statuses": statuses,
        "reasoning": reasoning,
        "content": content or f"The answer is \\boxed{{{index}}}.",
        "finish": finish,
        "tokens": tokens,
        "model": model,
        "cost": cost,
    }


def make_run(
    run_dir: Path,
    problems: list[Problem],
    samples: list[dict[str, Any]],
    *,
    verifiers: tuple[str, ...] = ("math",),
    extra_verdicts: list[Verdict] | None = None,
    failures: int = 0,
    template: str = "boxed_math",
) -> dict[str, str]:
    """Write problems.jsonl, samples.jsonl and verdicts.jsonl; return {f"{pid}#{index}": sample id}.

    Sample ids are the real ones harvest would give under :func:`recipe` with ``prompt.template``
    = ``template`` (curation ignores samples of another recipe as stale).
    """
    th = template_hash(PromptConfig(template=template))
    sampling = SamplingConfig().model_dump()
    run_dir.mkdir(parents=True, exist_ok=True)
    ids: dict[str, str] = {}
    with JsonlFile(run_dir / "problems.jsonl", Problem) as ps:
        for p in problems:
            ps.append(p)
    with (
        JsonlFile(run_dir / "samples.jsonl", Sample) as ss,
        JsonlFile(run_dir / "verdicts.jsonl", Verdict, key=("sample_id", "verifier")) as vs,
    ):
        for spec in samples:
            sid = sample_id(spec["pid"], spec["index"], spec["model"], sampling, th)
            ids[f"{spec['pid']}#{spec['index']}"] = sid
            ss.append(
                Sample(
                    id=sid,
                    problem_id=spec["pid"],
                    index=spec["index"],
                    model=spec["model"],
                    reasoning=spec["reasoning"],
                    content=spec["content"],
                    finish_reason=spec["finish"],
                    usage=Usage(prompt_tokens=20, completion_tokens=spec["tokens"]),
                    cost_usd=spec["cost"],
                    endpoint="http://127.0.0.1:1/v1",
                )
            )
            for verifier, status in zip(verifiers, spec["statuses"], strict=False):
                if status is None:
                    continue
                vs.append(
                    Verdict(
                        sample_id=sid,
                        problem_id=spec["pid"],
                        verifier=verifier,
                        status=status,
                        answer=str(spec["index"]),
                        reason="" if status == "pass" else "mismatch",
                        tag="" if status == "pass" else "mismatch",
                    )
                )
        for v in extra_verdicts or []:
            vs.append(v)
    if failures:
        with JsonlFile(run_dir / "failures.jsonl", Sample, key=None) as fs:
            for k in range(failures):
                fs.append(
                    Sample(
                        id=f"f{k}",
                        problem_id=problems[0].id,
                        index=0,
                        model=MODEL,
                        error="HTTP 500",
                        error_kind="server",
                        cost_usd=0.002,
                    )
                )
    return ids


def recipe(run_dir: Path, **sections: Any) -> Recipe:
    data: dict[str, Any] = {
        "name": "t",
        "run_dir": str(run_dir),
        "source": {"kind": "jsonl", "path": "x.jsonl"},
        "teacher": {"model": MODEL, "n": N},
    }
    for k, v in sections.items():
        data[k] = v
    return Recipe.model_validate(data)
