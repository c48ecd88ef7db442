"""How export uses the rewrites: a trace with a row in rewrites.jsonl is trained on its rewrite.

:func:`with_rewrites` streams traces.jsonl with each rewritten trace's reasoning and answer replaced
by the rewrite's thought and solution (the original stays in samples.jsonl and traces.jsonl; the
trace's ``metadata.rewrite`` names the model). :func:`rewrite_message` is the assistant turn of a
rewritten trace under ``dataset.reasoning: think_tags``: the Sky-T1 blocks themselves, as
SkyThought's scripts/convert_to_data.py trains on the converted reply (other modes place the
thought and solution like any reasoning and answer). :func:`stamp` changes whenever the rewrites do
(folded into the export's fingerprint). This module reads rewrites.jsonl; it writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tracesynth.records import Trace
from tracesynth.rundir.jsonio import json_lines
from tracesynth.rundir.layout import RunLayout
from tracesynth.rundir.store import JsonlFile
from tracesynth.thinking import SOLUTION, THOUGHT


def rewrites(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{sample id: rewrite row}`` of a run folder ({} when it has none)."""
    return {str(r["id"]): r for r in json_lines(RunLayout(run_dir).rewrites) if "id" in r}


def with_rewrites(traces_path: str | Path, enabled: bool = True) -> Iterator[Trace]:
    """The traces of ``traces_path``, rewritten where the run folder beside it has a rewrite (and the
    recipe's ``rewrite.enabled``: a variant that turns it off trains on the originals)."""
    path = Path(traces_path)
    done = rewrites(path.parent) if enabled else {}
    for trace in JsonlFile(path, Trace, key="sample_id").iter():
        row = done.get(trace.sample_id)
        if row is None or not row.get("reasoning") or not row.get("content"):
            yield trace
            continue
        meta = {**trace.metadata, "rewrite": {"model": row.get("model")}}
        yield trace.model_copy(update={"reasoning": row["reasoning"], "content": row["content"], "metadata": meta})


def rewrite_message(trace: Trace, reasoning_mode: str) -> dict[str, Any] | None:
    """The assistant turn of a rewritten trace under ``think_tags`` (None: not rewritten, or another mode)."""
    if reasoning_mode != "think_tags" or "rewrite" not in trace.metadata:
        return None
    thought, solution = (trace.reasoning or "").strip(), (trace.content or "").strip()
    text = f"{THOUGHT.start}\n\n{thought}\n\n{THOUGHT.end}\n\n{SOLUTION.start}\n\n{solution}\n\n{SOLUTION.end}"
    return {"role": "assistant", "content": text}


def stamp(traces_path: str | Path) -> tuple[int, int]:
    """(mtime_ns, size) of the rewrites beside ``traces_path`` ((0, 0) when there are none)."""
    p = RunLayout(Path(traces_path).parent).rewrites
    try:
        st = p.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


__all__ = ["rewrite_message", "rewrites", "stamp", "with_rewrites"]
