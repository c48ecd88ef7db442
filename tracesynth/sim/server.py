"""The simulator's OpenAI-compatible routes on top of :mod:`tracesynth.sim.http`.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health``, ``GET /stats`` (JSON counters), and the files and batches APIs of
:mod:`~tracesynth.sim.batches`. More can be added with :meth:`SimApp.route` (a path may hold
``{name}`` segments, passed to the handler as keyword arguments).
Request flow: auth (when a key is set) → JSON and parameter validation (400s shaped like
OpenAI's) → generation (:mod:`~tracesynth.sim.engine`) → rate limiter (429 + headers) → the
request's fault (:mod:`~tracesynth.sim.faults`) → reply, at once when there is no delay (no
task), else from a coroutine (delays, streams, hangs, drops).
Usage is reported where ``SimOptions.usage`` says (:func:`usage_body`); cached prompt tokens are
the messages before the last one, once an earlier request sent the same ones (a prefix cache).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import math
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from tracesynth.sim import engine
from tracesynth.sim.answer_key import AnswerKey
from tracesynth.sim.faults import FaultPlan, RateLimiter
from tracesynth.sim.http import Connection, Delayed, Request, response
from tracesynth.sim.options import SimOptions
from tracesynth.sim.solver import Solver
from tracesynth.sim.stream import stream_reply
from tracesynth.sim.tokens import count_chat_prompt, count_tokens, message_text

Handler = Callable[..., Any]  # (request, connection, **path parameters)
_dumps = orjson.dumps  # bytes; request JSON in and out is 2-7x faster than the json module (measured)
_ERROR_BODIES = {
    "500": (500, "The server had an error while processing your request. Sorry about that!"),
    "503": (503, "The engine is currently overloaded, please try again later."),
}
_BAD_GATEWAY = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_
        self.headers = headers or []

    def render(self) -> bytes:
        err = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return response(self.status, _dumps({"error": err}), self.headers)


class Stats:
    """Request and fault counters (read from any thread via :meth:`snapshot`)."""

    def __init__(self) -> None:
        self.c: dict[str, Any] = {
            "requests": 0,
            "in_flight": 0,
            "max_in_flight": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "routes": {},
            "status": {},
            "faults": {},
            "rate_limited": {},
        }

    def bump(self, group: str, key: str | int, by: int = 1) -> None:
        d = self.c[group]
        d[str(key)] = d.get(str(key), 0) + by

    def snapshot(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, dict) else v for k, v in self.c.items()}


class SimApp:
    """The OpenAI-compatible application; ``dispatch`` is called by the HTTP protocol."""

    def __init__(self, options: SimOptions) -> None:
        self.opts = options
        key = AnswerKey.load(options.answer_key) if options.answer_key else None
        self.solver = Solver(
            options.seed,
            options.wrong_rate,
            key,
            slip_rate=options.slip_rate,
            mistakes=options.mistakes,
            wrong_rate_bounds=options.wrong_rate_bounds,
        )
        self.faults = FaultPlan(options)
        self.limiter = RateLimiter(options.rpm, options.tpm)
        self.stats = Stats()
        self._key = options.api_key.get_secret_value() if options.api_key else None
        self._ids = itertools.count(1)
        self._prefixes: set[bytes] = set()  # message prefixes seen: what a provider's prompt cache would hold
        self.routes: dict[tuple[str, str], Handler] = {}
        self.patterns: list[tuple[str, re.Pattern[str], Handler]] = []
        self.route("POST", "/v1/chat/completions")(self.chat)
        self.route("POST", "/v1/completions")(self.completions)
        self.route("GET", "/v1/models")(self.models)
        self.route("GET", "/health")(lambda req, conn: response(200, b'{"status":"ok"}'))
        self.route("GET", "/stats")(lambda req, conn: response(200, _dumps(self.stats.snapshot())))
        from tracesynth.sim.batches import BatchService

        self.batches = BatchService(self)

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            if "{" in path:
                self.patterns.append((method, re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)), fn))
            else:
                self.routes[(method, path)] = fn
            return fn

        return register

    # -- entry -----------------------------------------------------------------------------
    def dispatch(self, req: Request, conn: Connection) -> Any:
        st = self.stats
        st.c["requests"] += 1
        st.bump("routes", req.path)
        try:
            handler = self.routes.get((req.method, req.path))
            params: dict[str, str] = {}
            if handler is None:
                handler, params = self._match(req)
            if self._key is not None and req.path.startswith("/v1/"):
                self._auth(req)
            out = handler(req, conn, **params)
        except ApiError as exc:
            st.bump("status", exc.status)
            return exc.render()
        if isinstance(out, bytes):
            st.bump("status", int(out[9:12]))
        return out

    def _match(self, req: Request) -> tuple[Handler, dict[str, str]]:
        """A ``{name}`` route for the request (404 / 405 when there is none)."""
        allowed = False
        for method, pattern, fn in self.patterns:
            m = pattern.fullmatch(req.path)
            if m is not None:
                if method == req.method:
                    return fn, m.groupdict()
                allowed = True
        if allowed or any(p == req.path for _, p in self.routes):
            raise ApiError(405, f"Method {req.method} not allowed for {req.path}")
        raise ApiError(404, f"Unknown route {req.path}", code="not_found")

    def _auth(self, req: Request) -> None:
        given = req.headers.get("authorization", "")
        if not given:
            raise ApiError(401, "You didn't provide an API key. Use an 'Authorization: Bearer <key>' header.")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), self._key or ""):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    # -- routes ----------------------------------------------------------------------------
    def models(self, req: Request, conn: Connection) -> bytes:
        data = [{"id": self.opts.model, "object": "model", "created": 0, "owned_by": "tracesynth-sim"}]
        return response(200, _dumps({"object": "list", "data": data}))

    def chat(self, req: Request, conn: Connection) -> Any:
        body = _json(req)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "'messages' must be a non-empty list of message objects", "messages")
        p = self._params(body)
        users = [m for m in messages if m.get("role") == "user"] or messages
        text = message_text(users[-1].get("content"))
        choices = engine.chat_choices(
            self.solver, text, self.opts.reasoning, p["n"], p["max_tokens"], p["stop"], p["seed"], p["temperature"]
        )
        p["cached"] = self._cached(messages) if self.opts.usage in ("deepseek", "cached") else 0
        return self._reply(req, conn, "chat", p, count_chat_prompt(messages), choices)

    def _cached(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens a prefix cache would serve: the messages before the last, when seen before."""
        prefix = messages[:-1]
        if not prefix:
            return 0
        key = _dumps(prefix)
        if key in self._prefixes:
            return count_chat_prompt(prefix)
        self._prefixes.add(key)
        return 0

    def completions(self, req: Request, conn: Connection) -> Any:
        body = _json(req)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "'prompt' must be a string (token ids and batches are not simulated)", "prompt")
        p = self._params(body)
        choices = engine.completion_choices(
            self.solver, prompt, p["n"], p["max_tokens"], p["stop"], p["seed"], p["temperature"]
        )
        return self._reply(req, conn, "text", p, count_tokens(prompt), choices)

    def _params(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "'model' is required", "model")
        if self.opts.strict_model and model != self.opts.model:
            raise ApiError(404, f"The model `{model}` does not exist.", "model", "model_not_found")
        n = _int(body, "n", 1, 1, 128)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None:
            max_tokens = _int({"max_tokens": max_tokens}, "max_tokens", None, 1, 10**9)
        stop = body.get("stop") or []
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 16:
            raise ApiError(400, "'stop' must be a string or a list of up to 16 strings", "stop")
        temperature = body.get("temperature")
        if temperature is not None and (not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2):
            raise ApiError(400, "'temperature' must be a number between 0 and 2", "temperature")
        opts = body.get("stream_options") or {}
        return {
            "model": model,
            "n": n,
            "max_tokens": max_tokens,
            "stop": stop,
            "seed": body.get("seed"),
            "temperature": temperature,
            "stream": bool(body.get("stream")),
            "include_usage": bool(isinstance(opts, dict) and opts.get("include_usage")),
        }

    # -- replies ---------------------------------------------------------------------------
    def _reply(
        self,
        req: Request,
        conn: Connection,
        kind: str,
        p: dict[str, Any],
        prompt_tokens: int,
        choices: list[engine.Choice],
    ) -> Any:
        st = self.stats
        completion = sum(c.completion_tokens for c in choices)
        decision = self.faults.decide(req.body)
        headers: list[tuple[str, str]] = []
        if self.limiter.active:
            wait, which = self.limiter.admit(prompt_tokens + completion)
            headers = self.limiter.headers()
            if wait:
                st.bump("rate_limited", which)
                raise _too_many(wait if math.isfinite(wait) else 60.0, which, headers)
        fault = decision.fault
        if fault != "ok":
            st.bump("faults", fault)
        if fault == "429":
            raise _too_many(self.opts.retry_after_s, "requests", headers)
        if fault in _ERROR_BODIES:
            status, msg = _ERROR_BODIES[fault]
            raise ApiError(status, msg, type_="server_error", headers=headers)
        if fault == "502":
            return response(502, _BAD_GATEWAY, headers, content_type="text/html")
        st.c["prompt_tokens"] += prompt_tokens
        st.c["completion_tokens"] += completion
        reasoning = sum(c.reasoning_tokens for c in choices)
        cached = min(int(p.get("cached", 0)), prompt_tokens)
        usage = usage_body(self.opts.usage, kind, prompt_tokens, completion, reasoning, cached)
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-sim{next(self._ids):010d}"
        if p["stream"]:
            st.bump("status", 200)
            return self._run(
                conn,
                stream_reply(
                    conn,
                    self.opts,
                    kind,
                    rid,
                    p["model"],
                    choices,
                    usage,
                    p["include_usage"],
                    headers,
                    decision.latency_s,
                    fault,
                ),
            )
        delay = decision.latency_s + self.opts.token_delay_s * completion
        body = _dumps(_full_body(kind, rid, p["model"], choices, usage, fault))
        if fault == "malformed":
            body = body[: max(1, len(body) // 2)]
        if fault in ("ok", "malformed", "empty_choices"):
            if delay <= 0:
                st.bump("status", 200)
                return response(200, body, headers)
            c = st.c
            c["in_flight"] += 1
            c["max_in_flight"] = max(c["max_in_flight"], c["in_flight"])
            return Delayed(delay, response(200, body, headers), self._delayed_done)
        return self._run(conn, self._later(conn, body, headers, delay, fault))

    def _delayed_done(self, sent: bool) -> None:
        self.stats.c["in_flight"] -= 1
        if sent:
            self.stats.bump("status", 200)

    async def _run(self, conn: Connection, coro: Any) -> None:
        st = self.stats.c
        st["in_flight"] += 1
        st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])
        try:
            await coro
        finally:
            st["in_flight"] -= 1

    async def _later(
        self, conn: Connection, body: bytes, headers: list[tuple[str, str]], delay: float, fault: str
    ) -> None:
        if fault == "hang":
            await asyncio.wait([conn.closed], timeout=self.opts.hang_s)
            conn.close()
            return
        if delay > 0:
            await asyncio.sleep(delay)
        self.stats.bump("status", 200)
        out = response(200, body, headers)
        if fault in ("drop_body", "drop_stream"):
            conn.write(out[: len(out) - len(body) // 2])
            conn.close()
            return
        conn.write(out)


def _json(req: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _int(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> Any:
    v = body.get(name, default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ApiError(400, f"'{name}' must be an integer between {lo} and {hi}", name)
    return v


def _too_many(wait: float, which: str, headers: list[tuple[str, str]]) -> ApiError:
    retry = [("retry-after", str(max(1, math.ceil(wait)))), ("retry-after-ms", str(max(1, math.ceil(wait * 1000))))]
    msg = f"Rate limit reached for {which}. Please try again in {wait:.3g}s."
    return ApiError(429, msg, code="rate_limit_exceeded", type_=which, headers=headers + retry)


def usage_body(
    style: str, kind: str, prompt: int, completion: int, reasoning: int, cached: int
) -> dict[str, Any] | None:
    """The ``usage`` object a provider of ``style`` sends (None: it sends none)."""
    if style == "none":
        return None
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if kind == "chat":
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        if style == "cached":
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        elif style == "deepseek":  # api-docs.deepseek.com: hit and miss at the top level
            usage["prompt_cache_hit_tokens"] = cached
            usage["prompt_cache_miss_tokens"] = prompt - cached
    return usage


def _full_body(
    kind: str, rid: str, model: str, choices: list[engine.Choice], usage: dict[str, Any] | None, fault: str
) -> dict[str, Any]:
    out = []
    if fault != "empty_choices":
        for i, c in enumerate(choices):
            if kind == "chat":
                msg: dict[str, Any] = {"role": "assistant", "content": c.fields.get("content")}
                for name in ("reasoning_content", "reasoning"):
                    if name in c.fields:
                        msg[name] = c.fields[name]
                out.append({"index": i, "message": msg, "logprobs": None, "finish_reason": c.finish_reason})
            else:
                out.append(
                    {"index": i, "text": c.fields.get("text", ""), "logprobs": None, "finish_reason": c.finish_reason}
                )
    obj = "chat.completion" if kind == "chat" else "text_completion"
    body = {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": out}
    if usage is not None:
        body["usage"] = usage
    return body
