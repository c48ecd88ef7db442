"""TeacherClient: chat completions and raw completions against one or more OpenAI-compatible endpoints.

One client per run (or per evaluator / judge): it owns the HTTP transport (pooled), the endpoint
pool, the flow control (concurrency + rate buckets) and the retry policy, and returns normalised
results — reasoning split from the answer, usage with reasoning tokens, finish reasons, latency,
endpoint — whatever server produced them (see :mod:`tracesynth.teacher.parse`).

    async with TeacherClient(["http://127.0.0.1:8000/v1"], model="m") as client:
        result = await client.chat([{"role": "user", "content": "2+2?"}], max_tokens=512)
        result.choices[0].reasoning, result.choices[0].content, result.usage

Failures: retryable ones (see :mod:`tracesynth.teacher.retry`) are retried with tenacity up to
``max_attempts``; what is left raises :class:`ItemError` (kind, reason, possibly-billed attempts)
or, for 401/403, :class:`~tracesynth.errors.AuthError` naming the endpoint and the *name* of the
key's environment variable — the key itself is never put in a message, log or record.

Money: a call may carry an :class:`AttemptGate`. The client asks it before *every* attempt
(:meth:`AttemptGate.admit`; a refusal raises :class:`~tracesynth.teacher.retry.BudgetRefused`) and
tells it after every attempt whether that attempt may have been billed (:meth:`AttemptGate.settle`),
so the caller's ledger can reserve each attempt's worst case (tracesynth.accounting.ledger).

This module does not schedule work, write files or count money (see tracesynth.stages.harvest, accounting/).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from tracesynth.accounting.tokens import DEFAULT_WORST_OUTPUT_TOKENS
from tracesynth.accounting.tokens import prompt_tokens as estimate_tokens
from tracesynth.config import SamplingConfig, TeacherConfig
from tracesynth.errors import AuthError
from tracesynth.records import Usage
from tracesynth.teacher.endpoints import Endpoint, EndpointPool
from tracesynth.teacher.http import make_transport
from tracesynth.teacher.limits import FlowControl
from tracesynth.teacher.parse import (
    Choice,
    MalformedResponse,
    parse_chat,
    parse_completion,
    split_reasoning,
)
from tracesynth.teacher.retry import (
    AUTH_STATUS,
    RETRY_STATUS,
    BudgetRefused,
    ItemError,
    Transient,
    WaitRetryAfter,
    is_retryable,
    kind_of_status,
    retry_after_s,
)

# OpenAI reasoning models refuse `max_tokens` and want `max_completion_tokens`.
_MAX_COMPLETION_MODELS = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)


@dataclass(slots=True)
class ChatResult:
    """A successful call: normalised choices, total usage, and where/how it was served."""

    choices: list[Choice]
    usage: Usage | None  # None: the server sent none (or not numbers); see accounting.tokens.trusted_usage
    latency_s: float
    endpoint: str
    model: str | None = None
    attempts: int = 1
    possibly_billed: int = 0  # earlier attempts that may have been billed (timeouts, lost bodies)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _CallState:
    attempts: int = 0
    possibly_billed: int = 0
    last_endpoint: str = ""
    last_kind: str = ""
    gate: AttemptGate | None = None


class AttemptGate(Protocol):
    """What a caller that counts money gives a call (see the module docstring)."""

    async def admit(self) -> bool:
        """Before an attempt: may it start? (False: the budget refuses it.)"""
        ...

    def settle(self, *, possibly_billed: bool) -> None:
        """After an attempt: it ended, and may (or may not) have been billed."""
        ...


def sampling_params(
    sampling: SamplingConfig | dict[str, Any] | None, *, n: int = 1, seed_offset: int = 0, model: str = ""
) -> dict[str, Any]:
    """Request parameters from a recipe's sampling block (None values dropped, extra_body merged last)."""
    if sampling is None:
        data: dict[str, Any] = {}
    elif isinstance(sampling, SamplingConfig):
        data = sampling.model_dump()
    else:
        data = dict(sampling)
    extra = data.pop("extra_body", None) or {}
    out = {k: v for k, v in data.items() if v is not None}
    if "seed" in out and seed_offset:
        out["seed"] = int(out["seed"]) + seed_offset
    if n > 1:
        out["n"] = n
    if "max_tokens" in out and _MAX_COMPLETION_MODELS.match(model):
        out["max_completion_tokens"] = out.pop("max_tokens")
    out.update(extra)
    return out


class TeacherClient:
    """Async client for chat completions (harvest, judge) and completions (budget forcing)."""

    def __init__(
        self,
        base_urls: list[str] | str,
        *,
        model: str,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 1800.0,
        concurrency: int = 64,
        max_attempts: int = 6,
        flow: FlowControl | None = None,
        http: str = "aiohttp",
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        bench_after: int = 5,
        bench_s: float = 30.0,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        self.model = model
        self.api_key_env = api_key_env
        self._secret = api_key or ""
        self.flow = flow or FlowControl(concurrency)
        self.pool = EndpointPool(urls, bench_after=bench_after, bench_s=bench_s)
        self.transport = make_transport(
            http, api_key=api_key, timeout_s=timeout_s, max_connections=max(concurrency, self.flow.limit.max_limit)
        )
        self.max_attempts = max_attempts
        self._wait = WaitRetryAfter(backoff_base_s, backoff_max_s)
        self.backing_off = 0  # calls sleeping before a retry right now
        self.on_backoff: Callable[[], None] | None = None  # told when a call starts such a sleep
        self.events: Counter[str] = Counter()  # transient and item error kinds seen, for progress

    @classmethod
    def from_config(
        cls, teacher: TeacherConfig, *, base_urls: list[str] | None = None, flow: FlowControl | None = None
    ) -> TeacherClient:
        """Build from a recipe's ``teacher:`` section (the key read from ``teacher.api_key_env``)."""
        key = os.environ.get(teacher.api_key_env) if teacher.api_key_env else None
        flow = flow or FlowControl(
            teacher.concurrency,
            rpm=teacher.rpm,
            rps=teacher.rps,
            tpm=teacher.tpm,
            input_tpm=teacher.input_tpm,
            output_tpm=teacher.output_tpm,
            adaptive=teacher.adaptive,
        )
        return cls(
            base_urls or teacher.base_urls,
            model=teacher.model,
            api_key=key or None,
            api_key_env=teacher.api_key_env,
            timeout_s=teacher.timeout_s,
            concurrency=teacher.concurrency,
            max_attempts=teacher.max_attempts,
            flow=flow,
            http=teacher.http,
            backoff_base_s=teacher.backoff_base_s,
            backoff_max_s=teacher.backoff_max_s,
            bench_after=teacher.bench_after,
            bench_s=teacher.bench_s,
        )

    # -- public calls ------------------------------------------------------------------------
    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        n: int = 1,
        sampling: SamplingConfig | dict[str, Any] | None = None,
        seed_offset: int = 0,
        gate: AttemptGate | None = None,
        **params: Any,
    ) -> ChatResult:
        """POST /chat/completions; ``params`` (temperature, max_tokens, ...) override ``sampling``."""
        body = {
            "model": self.model,
            "messages": messages,
            **sampling_params(sampling, n=n, seed_offset=seed_offset, model=self.model),
            **{k: v for k, v in params.items() if v is not None},
        }
        return await self._call("/chat/completions", body, parse_chat, estimate_tokens(messages), n, gate)

    async def request(self, body: dict[str, Any], *, gate: AttemptGate | None = None) -> ChatResult:
        """POST a prepared /chat/completions body (the harvest planner builds them)."""
        n = int(body.get("n") or 1)
        return await self._call("/chat/completions", body, parse_chat, estimate_tokens(body["messages"]), n, gate)

    async def complete(
        self,
        prompt: str | list[int],
        *,
        n: int = 1,
        sampling: SamplingConfig | dict[str, Any] | None = None,
        gate: AttemptGate | None = None,
        **params: Any,
    ) -> ChatResult:
        """POST /completions (raw continuation, e.g. budget forcing); text is in ``choices[i].content``."""
        sp = sampling_params(sampling, n=n)
        sp.pop("max_completion_tokens", None)
        body = {"model": self.model, "prompt": prompt, **sp, **{k: v for k, v in params.items() if v is not None}}
        est = len(prompt) if isinstance(prompt, list) else estimate_tokens(prompt)  # token ids are counted exactly
        return await self._call("/completions", body, parse_completion, est, n, gate)

    async def models(self) -> tuple[int, list[str]]:
        """GET /models of the first endpoint: (HTTP status, model ids) — for diagnosing a refused run."""
        status, _, raw = await self.transport.get(self.pool.endpoints[0].url, "/models")
        ids: list[str] = []
        if status == 200:
            try:
                data = orjson.loads(raw).get("data")
            except (ValueError, AttributeError):
                data = None
            ids = [str(m.get("id")) for m in data or [] if isinstance(m, dict) and m.get("id")]
        return status, ids

    # -- machinery ---------------------------------------------------------------------------
    async def _call(
        self,
        path: str,
        body: dict[str, Any],
        parser: Callable[..., Any],
        est_in: int,
        n: int,
        gate: AttemptGate | None = None,
    ) -> ChatResult:
        max_out = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_WORST_OUTPUT_TOKENS
        est_out = float(max_out) * max(1, int(body.get("n", n) or 1))
        state = _CallState(gate=gate)
        try:  # the first attempt runs outside tenacity: its per-call set-up costs more than a whole request
            result = await self._attempt(path, body, parser, est_in, est_out, state)
            result.attempts = 1
            return result
        except Transient as exc:
            if self.max_attempts <= 1:
                return self._gave_up(exc, state)
            first: list[Transient] = [exc]
        except ItemError as exc:
            exc.attempts, exc.possibly_billed = state.attempts, state.possibly_billed
            raise
        # tenacity replays the first failure (no request) so its stop and wait rules see every attempt
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            reraise=True,
            sleep=self._backoff,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if first:
                        raise first.pop()
                    result = await self._attempt(path, body, parser, est_in, est_out, state)
        except Transient as exc:
            return self._gave_up(exc, state)
        except ItemError as exc:
            exc.attempts, exc.possibly_billed = state.attempts, state.possibly_billed
            raise
        result.attempts, result.possibly_billed = state.attempts, state.possibly_billed
        return result

    async def _backoff(self, seconds: float) -> None:
        self.backing_off += 1
        try:
            if self.on_backoff is not None:
                self.on_backoff()
            await asyncio.sleep(seconds)
        finally:
            self.backing_off -= 1

    def _gave_up(self, exc: Transient, state: _CallState) -> NoReturn:
        self.events[exc.kind + ":gave_up"] += 1
        raise ItemError(
            exc.kind,
            f"gave up after {state.attempts} attempts: {exc}",
            status=exc.status,
            possibly_billed=state.possibly_billed,
            attempts=state.attempts,
            endpoint=state.last_endpoint,
        ) from None

    async def _attempt(
        self,
        path: str,
        body: dict[str, Any],
        parser: Callable[..., Any],
        est_in: int,
        est_out: float,
        state: _CallState,
    ) -> ChatResult:
        gate = state.gate
        if gate is not None and not await gate.admit():
            raise BudgetRefused(
                f"the budget has no room for attempt {state.attempts + 1}",
                attempts=state.attempts,
                last_kind=state.last_kind,
                endpoint=state.last_endpoint,
            )
        try:
            result = await self._attempt_once(path, body, parser, est_in, est_out, state)
        except Transient as exc:
            if gate is not None:
                gate.settle(possibly_billed=exc.possibly_billed)
            raise
        except BaseException:
            if gate is not None:
                gate.settle(possibly_billed=False)
            raise
        if gate is not None:
            gate.settle(possibly_billed=False)
        return result

    async def _attempt_once(
        self,
        path: str,
        body: dict[str, Any],
        parser: Callable[..., Any],
        est_in: int,
        est_out: float,
        state: _CallState,
    ) -> ChatResult:
        state.attempts += 1
        permit = await self.flow.acquire(est_in, est_out, retry=state.attempts > 1)
        ep = self.pool.pick()
        state.last_endpoint = ep.url
        ep.in_flight += 1
        ep.requests += 1
        usage: Usage | None = None
        t0 = time.perf_counter()
        try:
            try:
                status, headers, raw = await self.transport.post(ep.url, path, body)
            except Transient as exc:
                self._transient(exc, state)
                self.pool.fail(ep)
                raise
            latency = time.perf_counter() - t0
            if 200 <= status < 300:
                try:
                    choices, usage, model = parser(orjson.loads(raw))
                except (ValueError, MalformedResponse) as exc:  # JSONDecodeError is a ValueError
                    kind = exc.kind if isinstance(exc, MalformedResponse) else "malformed"
                    t = Transient(
                        kind,
                        f"HTTP {status} with an unusable body: {self._scrub(str(exc))[:200]}",
                        status=status,
                        possibly_billed=True,
                    )
                    self._transient(t, state)
                    raise t from None
                self.flow.observe_headers(headers)
                self.flow.on_success()
                self.pool.ok(ep)
                return ChatResult(choices, usage, latency, ep.url, model)
            self.flow.observe_headers(headers)
            raise self._status_error(status, headers, raw, ep, state)
        finally:
            ep.in_flight -= 1
            self.flow.release(
                permit, usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None
            )

    def _transient(self, exc: Transient, state: _CallState) -> None:
        self.events[exc.kind] += 1
        state.last_kind = exc.kind
        if exc.possibly_billed:
            state.possibly_billed += 1

    def _status_error(self, status: int, headers: Any, raw: bytes, ep: Endpoint, state: _CallState) -> Exception:
        kind, endpoint = kind_of_status(status), ep.url
        if status in AUTH_STATUS:
            self.events["auth"] += 1
            if self.api_key_env and not self._secret:
                hint = f"no API key set: export {self.api_key_env}"
            elif self.api_key_env:
                hint = f"check the key in ${self.api_key_env}"
            else:
                hint = "set teacher.api_key_env to the name of the variable holding the key"
            return AuthError(f"{endpoint}: HTTP {status}: the endpoint refused the credentials ({hint})")
        if status in RETRY_STATUS or status >= 500:
            if status == 429:
                self.flow.on_rate_limited()
            else:
                self.pool.fail(ep)
            exc = Transient(
                kind,
                f"HTTP {status}{self._detail(raw)}",
                status=status,
                retry_after=retry_after_s(headers),
                endpoint_fault=status != 429,
            )
            self._transient(exc, state)
            return exc
        self.events[kind] += 1
        return ItemError(kind, f"HTTP {status}{self._detail(raw)}", status=status, endpoint=endpoint)

    def _detail(self, raw: bytes) -> str:
        """The server's error message (scrubbed, one line, short) for an item error.

        OpenAI-style bodies carry it in ``error.message``; vLLM's ``ErrorResponse`` in a top-level ``message``.
        """
        try:
            body = json.loads(raw)
            err = body.get("error") if isinstance(body, dict) else None
            msg = err.get("message") if isinstance(err, dict) else err
            if not msg and isinstance(body, dict):
                msg = body.get("message") or body.get("detail")
        except (ValueError, AttributeError):
            msg = raw[:200].decode("utf-8", "replace")
        msg = " ".join(str(msg or "").split())
        return f": {self._scrub(msg)[:300]}" if msg else ""

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> TeacherClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = [
    "AttemptGate",
    "ChatResult",
    "Choice",
    "ItemError",
    "TeacherClient",
    "estimate_tokens",
    "sampling_params",
    "split_reasoning",
]
