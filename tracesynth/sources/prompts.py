"""Render a Problem into chat messages from a prompt template (shipped in ``prompts/`` or a file).

A template is plain text with ``{{ field }}`` placeholders; every other character is literal, so
LaTeX such as ``\\boxed{}`` needs no escaping. A line that is exactly ``[system]`` starts the system
prompt and a line that is exactly ``[user]`` starts the user message; without markers the whole
file is the user message. ``prompt.system`` in the recipe replaces the template's system prompt.

Fields: ``question`` (Problem.prompt), ``answer``, ``id``, ``source``, ``domain``, ``choices``
(metadata ``choices``/``options`` rendered as lettered lines) and ``metadata.KEY``. A field the
problem lacks raises :class:`~tracesynth.errors.TemplateError` naming template, problem and field; a
template whose user message has no ``{{ question }}`` is refused when it is loaded.

:func:`template_hash` hashes the resolved template text and system prompt; it is part of every
sample id. This module does not call any model and does not apply a tokenizer's chat template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.config import PromptConfig
from tracesynth.errors import TemplateError
from tracesynth.records import Problem
from tracesynth.sources.resources import prompts_dir

_FIELD = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Template:
    """A parsed template: where it came from, its system prompt (or None) and user text."""

    name: str
    system: str | None
    user: str

    @property
    def hash(self) -> str:
        return stable_hash("template", self.system, self.user)


def builtin_templates() -> list[str]:
    """Names of the templates shipped in ``prompts/``."""
    return sorted(p.stem for p in prompts_dir().glob("*.txt"))


def load_template(prompt_cfg: PromptConfig) -> Template:
    """Resolve ``prompt.template`` (a builtin name or a path) and apply ``prompt.system``."""
    path = _resolve(prompt_cfg.template)
    stat = path.stat()
    base = _parse(str(path), stat.st_mtime_ns, stat.st_size, prompt_cfg.template)
    if prompt_cfg.system is None:
        return base
    return Template(base.name, prompt_cfg.system or None, base.user)


def template_hash(prompt_cfg: PromptConfig, per_source: list[str | None] | None = None) -> str:
    """Hash of the template text plus system prompt: part of every sample id. ``per_source``: the
    ``source.template`` of each source (None where a source uses ``prompt.template``), folded in when set."""
    own = [t for t in per_source or [] if t]
    base = load_template(prompt_cfg).hash
    if not own:
        return base
    return stable_hash(base, *(load_template(PromptConfig(template=t, system=prompt_cfg.system)).hash for t in own))


def render_messages(
    problem: Problem, prompt_cfg: PromptConfig, template: Template | None = None
) -> list[dict[str, Any]]:
    """The chat messages for ``problem``: ``[system?, user]``.

    A problem given as ``messages`` (not ``prompt``) is sent as it is, after the template's
    system prompt unless the messages bring their own. Loops over many problems pass
    ``template=load_template(prompt_cfg)`` once instead of re-resolving the file per problem.
    """
    own = problem.metadata.get("prompt_template")  # source.template: this source's own prompt
    if isinstance(own, str) and own and own != prompt_cfg.template:
        tpl = load_template(PromptConfig(template=own, system=prompt_cfg.system))
    else:
        tpl = template if template is not None else load_template(prompt_cfg)
    out: list[dict[str, Any]] = []
    if problem.messages:
        has_system = any(m.get("role") == "system" for m in problem.messages)
        if tpl.system and not has_system:
            out.append({"role": "system", "content": _fill(tpl.system, problem, tpl.name)})
        out.extend(dict(m) for m in problem.messages)
        return out
    if tpl.system:
        out.append({"role": "system", "content": _fill(tpl.system, problem, tpl.name)})
    out.append({"role": "user", "content": _fill(tpl.user, problem, tpl.name)})
    return out


def system_prompt(prompt_cfg: PromptConfig) -> str | None:
    """The system prompt a recipe sends (for dataset cards and evaluation)."""
    return load_template(prompt_cfg).system


# -- internals -------------------------------------------------------------------------------
def _resolve(template: str) -> Path:
    if not template:
        raise TemplateError("prompt.template: empty (give a builtin name or a file path)")
    looks_like_path = "/" in template or "\\" in template or template.endswith((".txt", ".tmpl", ".md"))
    if not looks_like_path:
        path = prompts_dir() / f"{template}.txt"
        if path.is_file():
            return path
        names = ", ".join(builtin_templates())
        raise TemplateError(f"prompt.template: {template!r} is not a builtin template ({names}) nor a file")
    path = Path(template).expanduser()
    if not path.is_file():
        raise TemplateError(f"prompt.template: {template}: no such file")
    return path


@lru_cache(maxsize=64)
def _parse(path: str, _mtime_ns: int, _size: int, name: str) -> Template:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"prompt.template: {path}: cannot read ({exc})") from None
    sections: dict[str, list[str]] = {}
    current = "user"
    marked = False
    for line in text.splitlines():
        marker = line.strip()
        if marker in ("[system]", "[user]"):
            current = marker[1:-1]
            if current in sections:
                raise TemplateError(f"template {name}: section {marker} appears twice")
            sections[current] = []
            marked = True
            continue
        sections.setdefault(current, []).append(line)
    if marked and "user" not in sections:
        raise TemplateError(f"template {name}: has a [system] section but no [user] section")
    user = "\n".join(sections.get("user", [])).strip("\n")
    system = "\n".join(sections["system"]).strip("\n") if "system" in sections else None
    if not user.strip():
        raise TemplateError(f"template {name}: the user message is empty")
    if not any(m.group(1) == "question" for m in _FIELD.finditer(user)):
        # every request would be paid for without the problem in it
        raise TemplateError(
            f"prompt.template: {path}: the user message has no {{{{ question }}}} placeholder, so "
            "the problem would never be sent"
        )
    return Template(name, system or None, user)


def _fill(text: str, problem: Problem, name: str) -> str:
    def sub(match: re.Match[str]) -> str:
        return _field(problem, match.group(1), name)

    return _FIELD.sub(sub, text)


def _field(problem: Problem, field: str, name: str) -> str:
    value: Any
    if field == "question":
        value = problem.prompt
    elif field in ("answer", "id", "source", "domain"):
        value = getattr(problem, field)
    elif field == "choices":
        value = _choices(problem.metadata.get("choices", problem.metadata.get("options")))
    elif field.startswith("metadata."):
        value = problem.metadata
        for part in field.split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
    else:
        raise TemplateError(
            f"template {name}: problem {problem.id}: unknown field {field!r} "
            "(question, answer, id, source, domain, choices, metadata.KEY)"
        )
    if value is None or value == "":
        raise TemplateError(f"template {name}: problem {problem.id}: field {field!r} is missing")
    return value if isinstance(value, str) else str(value)


def _choices(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return "\n".join(f"{k}. {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if len(value) > len(_LETTERS):
            return None
        return "\n".join(f"{_LETTERS[i]}. {v}" for i, v in enumerate(value))
    return str(value)


__all__ = ["Template", "builtin_templates", "load_template", "render_messages", "system_prompt", "template_hash"]
