"""Why every request of a run was refused, in one line with the fix: asked of the server, not guessed.

:func:`explain` turns the first refusal of a run (an :class:`~tracesynth.teacher.retry.ItemError`
of a request kind: 404, 400, 422) into a message: for a 404 it lists the models the server knows
(``GET /models``) or, when the base URL lacks ``/v1`` and ``.../v1/models`` answers, says so; for a
400 / 422 it quotes the server's reason beside the sampling parameters that were sent. It never
raises: when the server cannot be asked, the message says what was refused. The key is never in it.
This module asks; it does not retry or record anything.
"""

from __future__ import annotations

from typing import Any

from tracesynth.teacher.client import TeacherClient
from tracesynth.teacher.retry import ItemError, Transient


async def explain(client: TeacherClient, exc: ItemError, teacher: Any) -> str:
    """One line: what the server refused, why, and the fix (see the module docstring)."""
    base = client.pool.endpoints[0].url
    head = f"every request was refused by {base} ({exc.kind}: {exc})"
    if exc.status == 404:
        return f"{head}; {await _not_found(client, base, teacher.model)}"
    if exc.status in (400, 422):
        s = teacher.sampling
        sent = ", ".join(
            f"{k}={v}"
            for k, v in (("max_tokens", s.max_tokens), ("temperature", s.temperature), ("top_p", s.top_p))
            if v is not None
        )
        return f"{head}; check teacher.sampling ({sent}) and teacher.model against what the server accepts"
    return head


async def _not_found(client: TeacherClient, base: str, model: str) -> str:
    try:
        status, ids = await client.models()
    except Transient:
        return "the server's /models could not be read; check teacher.base_urls and teacher.model"
    if status == 200 and ids and model not in ids:
        return f"the server knows models: {', '.join(ids[:12])}; set teacher.model to one of them"
    if status == 404 and not base.rstrip("/").endswith("/v1"):
        v1 = base.rstrip("/") + "/v1"
        try:
            v1_status = (await client.transport.get(v1, "/models"))[0]
        except Transient:
            v1_status = 0
        if v1_status == 200:
            return f"did you mean {v1}? (OpenAI-compatible servers answer under /v1; set teacher.base_urls)"
    if status == 200 and model in ids:
        return f"the server lists {model!r} but refuses /chat/completions for it: check that it serves chat"
    return f"check teacher.base_urls ({base}) and teacher.model ({model!r})"


__all__ = ["explain"]
