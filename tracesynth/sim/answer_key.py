"""The simulator's answer key: reference answers for problems it cannot work out itself.

A JSONL file, one problem a line: either a tracesynth ``Problem`` row (``prompt`` or ``messages``,
``answer``, ``id``) or a plain row with ``question`` / ``problem`` / ``prompt`` and ``answer`` /
``reference``. A request matches a row when the row's text (whitespace-normalised) is the whole
user message, one run of its paragraphs, or — for keys of up to 2,000 rows — a substring of it.
A bad line is a :class:`~tracesynth.errors.SourceError` naming the file and line.
This module does not solve anything; :mod:`tracesynth.sim.solver` decides how to use a match.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracesynth.errors import SourceError

_WS = re.compile(r"\s+")
_PARA = re.compile(r"\n\s*\n")
SCAN_LIMIT = 2000


def normalize(text: str) -> str:
    return _WS.sub(" ", text).strip()


@dataclass(frozen=True)
class KeyEntry:
    id: str
    text: str
    answer: str


def _row_text(row: dict[str, Any]) -> str | None:
    for field in ("question", "problem", "prompt"):
        if isinstance(row.get(field), str):
            return row[field]
    msgs = row.get("messages")
    if isinstance(msgs, list):
        users = [m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[-1], str):
            return users[-1]
    return None


class AnswerKey:
    """Normalised problem text -> reference answer."""

    def __init__(self, entries: list[KeyEntry]) -> None:
        self.entries = entries
        self._by_text = {e.text: e for e in entries}
        self.answers = sorted({e.answer for e in entries})

    @classmethod
    def load(cls, path: str | Path) -> AnswerKey:
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines(): JSON text may hold U+2028
        except OSError as exc:
            raise SourceError(f"{path}: cannot read answer key ({exc.strerror})") from None
        entries = []
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise SourceError(f"{path}:{lineno}: expected a JSON object")
            text = _row_text(row)
            answer = row.get("answer", row.get("reference"))
            if text is None:
                raise SourceError(f"{path}:{lineno}: no 'question', 'problem', 'prompt' or user message")
            if answer is None:
                raise SourceError(f"{path}:{lineno}: no 'answer'")
            entries.append(KeyEntry(str(row.get("id") or f"line{lineno}"), normalize(text), str(answer).strip()))
        return cls(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, text: str) -> KeyEntry | None:
        """The entry whose problem this user message asks, if any."""
        norm = normalize(text)
        hit = self._by_text.get(norm)
        if hit:
            return hit
        paras = [normalize(p) for p in _PARA.split(text) if p.strip()][:20]
        for i in range(len(paras)):
            for j in range(len(paras), i, -1):
                hit = self._by_text.get(" ".join(paras[i:j]))
                if hit:
                    return hit
        if len(self.entries) <= SCAN_LIMIT:
            best = None
            for e in self.entries:
                if e.text and e.text in norm and (best is None or len(e.text) > len(best.text)):
                    best = e
            return best
        return None
