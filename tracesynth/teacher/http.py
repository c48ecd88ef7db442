"""The two HTTP transports the teacher client can POST through: aiohttp (default) or the openai SDK.

Both take a JSON payload and return ``(status, headers, body bytes)`` for *any* HTTP status, and
turn network failures into :class:`~tracesynth.teacher.retry.Transient` (connection refused or
reset, dropped mid-body, read timeout). Status codes are classified by the client, not here.

Why two, and why aiohttp by default (measured in bench/harvest.py, see BENCHMARKS.md "Harvest"):
``openai.AsyncOpenAI`` on its default httpx2 stack spends ~5 ms of client CPU per request at 256
concurrent connections, most of it in httpcore's connection pool, which scans every connection on
each request. The SDK's own aiohttp transport (``openai.DefaultAioHttpClient``) removes that, but
the SDK's request building above any transport (options, headers, URL parsing, httpx2 Request)
still costs ~0.6 ms per call with a zero-cost in-process transport, and ``chat.completions.create``
adds ~1 ms of parameter transformation and response model construction. At 256 x 200 ms the client
must sustain 1,280 requests/s on one core, so that layer alone breaks the 1.25x wall-time target.
``http: aiohttp`` posts the same JSON to the same routes with the same headers through one pooled
``aiohttp.ClientSession``; ``http: openai`` keeps the SDK path (``AsyncOpenAI(max_retries=0,
http_client=DefaultAioHttpClient(...))`` and ``client.post(..., cast_to=httpx2.Response)``).

This module moves bytes; it does not retry, rate-limit or parse completions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson

from tracesynth._version import __version__
from tracesynth.teacher.retry import Transient

Response = tuple[int, Mapping[str, str], bytes]


class Transport(Protocol):
    async def post(self, base_url: str, path: str, payload: dict[str, Any]) -> Response: ...

    async def get(self, base_url: str, path: str) -> Response: ...

    async def aclose(self) -> None: ...


def _headers(api_key: str | None) -> dict[str, str]:
    h = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": f"tracesynth/{__version__}"}
    if api_key:
        h["Authorization"] = f"Bearer {api_key}"
    return h


class AiohttpTransport:
    """One pooled ``aiohttp.ClientSession`` (created on first use, inside the running loop)."""

    def __init__(self, *, api_key: str | None, timeout_s: float, max_connections: int) -> None:
        self._headers = _headers(api_key)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(30.0, timeout_s))
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers, timeout=self._timeout)
        return self._session

    async def post(self, base_url: str, path: str, payload: dict[str, Any]) -> Response:
        data = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)  # compact UTF-8 JSON, 3-5x faster than json
        try:
            async with self._get().post(base_url + path, data=data) as resp:
                return resp.status, resp.headers, await resp.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise Transient("connection", f"connect timeout ({exc.__class__.__name__})") from None
        except aiohttp.ClientConnectorError as exc:
            raise Transient("connection", f"cannot connect ({exc.os_error.__class__.__name__})") from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise Transient("dropped", f"connection dropped ({exc.__class__.__name__})", possibly_billed=True) from None
        except aiohttp.ClientConnectionError as exc:
            raise Transient("connection", f"connection error ({exc.__class__.__name__})") from None
        except TimeoutError:
            raise Transient("timeout", "no complete response within the timeout", possibly_billed=True) from None
        except aiohttp.ClientResponseError as exc:
            raise Transient("protocol", f"bad HTTP response ({exc.__class__.__name__})", possibly_billed=True) from None

    async def get(self, base_url: str, path: str) -> Response:
        """A GET (``/models``, for diagnosis); network failures are Transient like a POST's."""
        try:
            async with self._get().get(base_url + path) as resp:
                return resp.status, resp.headers, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient("connection", f"GET {path} failed ({exc.__class__.__name__})") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class OpenAITransport:
    """``openai.AsyncOpenAI(max_retries=0)`` per endpoint over one shared aiohttp-backed httpx2 client."""

    def __init__(self, *, api_key: str | None, timeout_s: float, max_connections: int) -> None:
        import openai

        httpx2: Any
        try:
            import httpx2  # openai >= 3 speaks httpx2
        except ImportError:
            import httpx as httpx2
        self._openai, self._httpx2 = openai, httpx2
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        try:
            self._http = openai.DefaultAioHttpClient(limits=limits, timeout=timeout_s)
        except RuntimeError:  # the aiohttp extra is missing: the SDK's default httpx2 stack
            self._http = openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout_s)
        self._api_key = api_key or "EMPTY"
        self._timeout_s = timeout_s
        self._clients: dict[str, Any] = {}

    def _client(self, base_url: str) -> Any:
        c = self._clients.get(base_url)
        if c is None:
            c = self._openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=base_url,
                max_retries=0,
                timeout=self._timeout_s,
                http_client=self._http,
                default_headers={"User-Agent": f"tracesynth/{__version__}"},
            )
            self._clients[base_url] = c
        return c

    async def post(self, base_url: str, path: str, payload: dict[str, Any]) -> Response:
        openai = self._openai
        try:
            r = await self._client(base_url).post(path, body=payload, cast_to=self._httpx2.Response)
            return r.status_code, r.headers, r.content
        except openai.APIStatusError as exc:
            return exc.status_code, exc.response.headers, exc.response.content
        except openai.APITimeoutError:
            raise Transient("timeout", "no complete response within the timeout", possibly_billed=True) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__.__class__.__name__ if exc.__cause__ else "unknown"
            if cause in ("ConnectError", "ConnectTimeout"):
                raise Transient("connection", f"cannot connect ({cause})") from None
            raise Transient("dropped", f"connection dropped ({cause})", possibly_billed=True) from None

    async def get(self, base_url: str, path: str) -> Response:
        openai = self._openai
        try:
            r = await self._client(base_url).get(path, cast_to=self._httpx2.Response)
            return r.status_code, r.headers, r.content
        except openai.APIStatusError as exc:
            return exc.status_code, exc.response.headers, exc.response.content
        except openai.APIError as exc:
            raise Transient("connection", f"GET {path} failed ({exc.__class__.__name__})") from None

    async def aclose(self) -> None:
        await self._http.aclose()


def make_transport(kind: str, *, api_key: str | None, timeout_s: float, max_connections: int) -> Transport:
    if kind == "openai":
        return OpenAITransport(api_key=api_key, timeout_s=timeout_s, max_connections=max_connections)
    return AiohttpTransport(api_key=api_key, timeout_s=timeout_s, max_connections=max_connections)
