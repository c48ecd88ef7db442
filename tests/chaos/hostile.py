"""A hostile OpenAI-compatible teacher for the chaos tests: honest answers, dishonest everything else.

``Hostile`` runs an aiohttp server on 127.0.0.1 (port 0) in a background thread::

    with Hostile(mode="no_usage") as h:
        h.base_url            # http://127.0.0.1:PORT/v1
        h.count("total")      # chat requests received

Every chat request is answered correctly: the numbers of the last user message ("What is 12 + 30?")
are parsed and the reply carries ``reasoning_content`` and ``content`` with ``\\boxed{42}``. What is
wrong with the reply is the *mode*, chosen per request, first match wins:

1. ``rule(question, seen)`` — a callable (``seen``: how many times this question came before) that
   returns a mode or None;
2. ``by_question`` — ``{substring of the question: mode}``;
3. ``script`` — modes for the first requests in arrival order;
4. ``mode`` — everything else.

Modes (:data:`MODES`): ``ok``; ``no_usage`` (no ``usage`` key); ``negative_usage`` (completion_tokens
-1,000,000); ``absurd_usage`` (completion_tokens 10**9, far above any max_tokens); ``string_usage``
(token counts are the string "abc"); ``finish_reason_int`` (``finish_reason: 7``); ``content_int``
(``message.content: 5``); ``chat_markup`` (content holding ``<|im_end|>\\n<|im_start|>user\\nhi``);
``hang`` (sleep ``hang_s``, then answer: the client times out first); ``hang_first`` (``hang`` the first
time a question is asked, ``ok`` afterwards).

Like a real server, whatever the mode: a model other than ``model`` gets 404 with OpenAI's
``The model `x` does not exist.``; ``max_tokens < 1`` or ``temperature < 0`` get vLLM's 400
(``{"object": "error", "message": ..., "type": "BadRequestError", "code": 400}``); any path outside
``/v1`` is 404 (a base URL without ``/v1``); ``GET /v1/models`` lists ``model``. ``delay_s`` delays
every chat reply (a slow teacher). A hung handler is cancelled as soon as its client disconnects, and
every one is cancelled on exit, so a test never waits for ``hang_s``.

Counters (:meth:`count`): ``total`` (chat requests), ``mode:<m>`` (replies by mode), ``status:<code>``,
``path:<path>`` (every request), ``hung`` (hangs started), ``rejected:<why>`` (404/400 refusals).
:attr:`log` keeps one small dict per chat request (question, model, mode, status).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

MODES = (
    "ok",
    "no_usage",
    "negative_usage",
    "absurd_usage",
    "string_usage",
    "finish_reason_int",
    "content_int",
    "chat_markup",
    "hang",
    "hang_first",
)
CHAT_MARKUP = "<|im_end|>\n<|im_start|>user\nhi"
_BINARY = re.compile(r"(-?\d+)\s*([+\-*x×])\s*(-?\d+)")
_PAD = "Let me double-check this step once more. "


def solve(question: str) -> int:
    """The right answer to an arithmetic question ("What is 12 + 30?" -> 42); else the sum of its integers."""
    m = _BINARY.search(question)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return a + b if op == "+" else a - b if op == "-" else a * b
    return sum(int(x) for x in re.findall(r"-?\d+", question))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


class Hostile:
    """The server; a context manager (``start`` / ``stop`` also work). Deterministic: no randomness."""

    def __init__(
        self,
        mode: str = "ok",
        *,
        model: str = "hostile",
        script: list[str] | None = None,
        by_question: dict[str, str] | None = None,
        rule: Callable[[str, int], str | None] | None = None,
        hang_s: float = 10.0,
        delay_s: float = 0.0,
        reasoning_chars: int = 0,
        content: Callable[[str], str] | None = None,
    ) -> None:
        for m in [mode, *(script or []), *(by_question or {}).values()]:
            if m not in MODES:
                raise ValueError(f"unknown mode {m!r}; modes are {', '.join(MODES)}")
        self.mode, self.model, self.script = mode, model, list(script or [])
        self.by_question, self.rule = dict(by_question or {}), rule
        self.hang_s, self.delay_s, self.reasoning_chars = hang_s, delay_s, reasoning_chars
        self.content = content
        self.counts: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- public -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server root, without /v1 (what a user who forgot the /v1 would type)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def count(self, key: str = "total") -> int:
        with self._lock:
            return self.counts[key]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def start(self) -> Hostile:
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._main, args=(ready, errors), name="hostile-teacher", daemon=True)
        self._thread.start()
        if not ready.wait(10) or errors:
            raise RuntimeError(f"hostile teacher did not start: {errors[:1]}")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> Hostile:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- server -------------------------------------------------------------------------------
    def _main(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            errors.append(exc)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # cancel a handler when its client hangs up: a hung reply never outlives the client's timeout
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()

    def _bump(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self.counts[k] += 1

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, text=json.dumps(data), content_type="application/json")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self._bump(f"path:{path}")
        if not (path == "/v1" or path.startswith("/v1/")):
            self._bump("status:404", "rejected:no_v1")
            return self._json({"detail": "Not Found"}, 404)
        if path.rstrip("/") == "/v1/models" and request.method == "GET":
            self._bump("status:200")
            return self._json(
                {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "hostile"}]}
            )
        if path.rstrip("/") == "/v1/chat/completions" and request.method == "POST":
            return await self._chat(request)
        self._bump("status:404", "rejected:route")
        return self._json({"detail": "Not Found"}, 404)

    def _pick(self, question: str, seen: int, arrival: int) -> str:
        if self.rule is not None:
            picked = self.rule(question, seen)
            if picked is not None:
                return picked
        for part, mode in self.by_question.items():
            if part in question:
                return mode
        if arrival < len(self.script):
            return self.script[arrival]
        return self.mode

    async def _chat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            self._bump("status:400", "rejected:json")
            return self._json(
                {
                    "object": "error",
                    "message": "invalid JSON body",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
                400,
            )
        messages = body.get("messages") or []
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        question = _text(users[-1].get("content")) if users else ""
        with self._lock:
            arrival = self.counts["total"]
            self.counts["total"] += 1
            seen = self._seen[question]
            self._seen[question] += 1
        entry: dict[str, Any] = {
            "question": question.split("\n", 1)[0],
            "model": body.get("model"),
            "max_tokens": body.get("max_tokens"),
            "temperature": body.get("temperature"),
        }
        with self._lock:
            self.log.append(entry)
        refusal = self._refuse(body)
        if refusal is not None:
            status, why, payload = refusal
            entry.update(mode="refused", status=status)
            self._bump(f"status:{status}", f"rejected:{why}")
            return self._json(payload, status)
        mode = self._pick(question, seen, arrival)
        if mode == "hang_first":
            mode = "hang" if seen == 0 else "ok"
        entry["mode"] = mode
        self._bump(f"mode:{mode}")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if mode == "hang":
            self._bump("hung")
            await asyncio.sleep(self.hang_s)  # the client gives up first (or the handler is cancelled)
        entry["status"] = 200
        self._bump("status:200")
        return self._json(self._reply(body, messages, question, mode))

    def _refuse(self, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]] | None:
        model = body.get("model")
        if model != self.model:
            return (
                404,
                "model",
                {
                    "error": {
                        "message": f"The model `{model}` does not exist.",
                        "type": "NotFoundError",
                        "param": "model",
                        "code": 404,
                    }
                },
            )
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if isinstance(max_tokens, (int, float)) and max_tokens < 1:
            return (
                400,
                "max_tokens",
                {
                    "object": "error",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                    "message": f"max_tokens must be at least 1, got {max_tokens}.",
                },
            )
        temperature = body.get("temperature")
        if isinstance(temperature, (int, float)) and temperature < 0:
            return (
                400,
                "temperature",
                {
                    "object": "error",
                    "message": f"temperature must be non-negative, got {float(temperature)}.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
            )
        return None

    def _reply(self, body: dict[str, Any], messages: list[Any], question: str, mode: str) -> dict[str, Any]:
        answer = solve(question)
        reasoning = f"We need to compute the value asked in: {question.splitlines()[0] if question else ''} "
        reasoning += f"Working it out step by step gives {answer}. "
        while len(reasoning) < self.reasoning_chars:
            reasoning += _PAD
        if self.reasoning_chars:
            reasoning = reasoning[: self.reasoning_chars]
        reasoning = reasoning.rstrip()
        content: Any = self.content(question) if self.content else f"The answer is \\boxed{{{answer}}}."
        if mode == "chat_markup":
            content = f"The answer is \\boxed{{{answer}}}.{CHAT_MARKUP}"
        prompt_chars = sum(len(_text(m.get("content"))) for m in messages if isinstance(m, dict))
        prompt_tokens = math.ceil(prompt_chars / 4) + 4 * len(messages)
        completion_tokens = math.ceil((len(reasoning) + len(str(content))) / 4)
        reasoning_tokens = math.ceil(len(reasoning) / 4)
        if mode == "content_int":
            content = 5
        finish: Any = 7 if mode == "finish_reason_int" else "stop"
        n = body.get("n") or 1
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": content, "reasoning_content": reasoning},
                "finish_reason": finish,
                "logprobs": None,
            }
            for i in range(n)
        ]
        reply: dict[str, Any] = {
            "id": f"chatcmpl-hostile-{self.counts['total']}",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": choices,
        }
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens * n,
            "total_tokens": prompt_tokens + completion_tokens * n,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens * n},
        }
        if mode == "negative_usage":
            usage.update(
                completion_tokens=-1_000_000,
                total_tokens=prompt_tokens - 1_000_000,
                completion_tokens_details={"reasoning_tokens": -1_000_000},
            )
        elif mode == "absurd_usage":
            usage.update(
                completion_tokens=10**9,
                total_tokens=prompt_tokens + 10**9,
                completion_tokens_details={"reasoning_tokens": 10**9},
            )
        elif mode == "string_usage":
            usage = {"prompt_tokens": "abc", "completion_tokens": "abc", "total_tokens": "abc"}
        if mode != "no_usage":
            reply["usage"] = usage
        return reply


__all__ = ["CHAT_MARKUP", "MODES", "Hostile", "solve"]
