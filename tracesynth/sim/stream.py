"""Server-sent events for streamed chat and text completions, the way OpenAI and vLLM send them.

Headers first, then (after the time-to-first-token latency) one ``data: {...}`` event per chunk
of ``stream_chunk_tokens`` tokens — choices interleaved round-robin, ``delta.role`` first, the
reasoning in ``delta.reasoning_content`` / ``delta.reasoning`` (or inline in ``delta.content``) —
a last event per choice with its ``finish_reason``, a usage event with ``choices: []`` when
``stream_options.include_usage`` is set (with ``usage: final_chunk`` the usage rides on the last
choice event instead, asked for or not; with ``usage: none`` there is none), and ``data: [DONE]``.
``token_delay_s`` is waited per token between events. Faults ``drop_body`` / ``drop_stream`` close
the connection after the first / half of the events; ``hang`` sends the headers and then nothing;
``malformed`` sends one event cut in half; ``empty_choices`` sends no choice events (usage and ``[DONE]`` only).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson

from tracesynth.sim.engine import Choice
from tracesynth.sim.http import LAST_CHUNK, Connection, chunk, head
from tracesynth.sim.options import SimOptions
from tracesynth.sim.tokens import TOKEN_RE

_dumps = orjson.dumps  # bytes; 2-3x faster than json.dumps(...).encode() (measured)


def split_tokens(text: str, k: int) -> list[tuple[str, int]]:
    """``text`` in pieces of ``k`` tokens (whitespace goes with the token before it)."""
    starts = [m.start() for m in TOKEN_RE.finditer(text)]
    if not starts:
        return [(text, 0)] if text else []
    cuts = [0, *starts[k::k], len(text)]
    out = [(text[a:b], k) for a, b in itertools.pairwise(cuts)]
    out[-1] = (out[-1][0], len(starts) - k * (len(out) - 1))
    return out


def _events(kind: str, choices: list[Choice], k: int) -> list[tuple[list[dict[str, Any]], int]]:
    """Rounds of (choice deltas, tokens in the round), round-robin over the choices."""
    per_choice = []
    for i, c in enumerate(choices):
        seq: list[tuple[dict[str, Any], int]] = []
        if kind == "chat":
            seq.append(
                (
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    },
                    0,
                )
            )
        for name, text, _ in c.pieces:
            for part, n in split_tokens(text, k):
                body: dict[str, Any] = {"delta": {name: part}} if kind == "chat" else {"text": part}
                seq.append(({"index": i, **body, "logprobs": None, "finish_reason": None}, n))
        last: dict[str, Any] = {"delta": {}} if kind == "chat" else {"text": ""}
        seq.append(({"index": i, **last, "logprobs": None, "finish_reason": c.finish_reason}, 0))
        per_choice.append(seq)
    rounds = []
    for j in range(max(len(s) for s in per_choice)):
        items = [s[j] for s in per_choice if j < len(s)]
        rounds.append(([d for d, _ in items], sum(n for _, n in items)))
    return rounds


async def stream_reply(
    conn: Connection,
    opts: SimOptions,
    kind: str,
    rid: str,
    model: str,
    choices: list[Choice],
    usage: dict[str, Any] | None,
    include_usage: bool,
    headers: list[tuple[str, str]],
    latency_s: float,
    fault: str,
) -> None:
    conn.write(head(200, [("content-type", "text/event-stream"), ("cache-control", "no-cache"), *headers]))
    if fault == "hang":
        await asyncio.wait([conn.closed], timeout=opts.hang_s)
        conn.close()
        return
    if latency_s > 0:
        await asyncio.sleep(latency_s)
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    created = int(time.time())
    rounds = [] if fault == "empty_choices" else _events(kind, choices, opts.stream_chunk_tokens)
    if fault == "malformed":
        event = _dumps({"id": rid, "object": obj, "created": created, "model": model, "choices": rounds[0][0]})
        rounds = []
        conn.write(chunk(b"data: " + event[: len(event) // 2] + b"\n\n"))
    drop_at = 1 if fault == "drop_body" else len(rounds) // 2 if fault == "drop_stream" else -1
    on_last = opts.usage == "final_chunk" and usage is not None
    for j, (deltas, n) in enumerate(rounds):
        if j == drop_at:
            conn.close()
            return
        data: dict[str, Any] = {"id": rid, "object": obj, "created": created, "model": model, "choices": deltas}
        if on_last and j == len(rounds) - 1:
            data["usage"] = usage
        conn.write(chunk(b"data: " + _dumps(data) + b"\n\n"))
        if opts.token_delay_s > 0 and n:
            await asyncio.sleep(opts.token_delay_s * n)
        await conn.drain()
    if include_usage and usage is not None and not on_last:
        data = {"id": rid, "object": obj, "created": created, "model": model, "choices": [], "usage": usage}
        conn.write(chunk(b"data: " + _dumps(data) + b"\n\n"))
    conn.write(chunk(b"data: [DONE]\n\n") + LAST_CHUNK)
