"""Which teacher failures are retried, how long to wait, and the errors the client raises.

Classification (one table, used by both HTTP transports):

    retried   connection errors, read timeouts, 408 409 429 500 502 503 504 (and other 5xx),
              malformed 200 bodies (bad JSON, empty choices)
    item      400 404 422 and any other 4xx → :class:`ItemError`, kept on the Sample, retried on resume
    fatal     401 403 → :class:`~tracesynth.errors.AuthError` naming the endpoint, never the key

Error kinds (``Sample.error_kind`` of a failure row) are named here and nowhere else:
:data:`STATUS_KIND` for HTTP statuses, :data:`TRANSPORT_KINDS` for network failures,
:data:`BODY_KINDS` for unusable 200 bodies; :data:`UNHEALTHY_KINDS` are the kinds that say more about
the endpoint than about the item (the harvester stops when they come many in a row).

Waits: jittered exponential backoff (tenacity's ``wait_random_exponential``), except that a
server's ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date) is honoured when present.
When retries run out the last error becomes an :class:`ItemError` of the same kind.

Attempts that may have been billed (a read timeout after the request was sent, a body dropped or
malformed after a 200) are counted in ``possibly_billed`` for the ledger.

This module classifies and waits; it sends nothing.
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

from tenacity import RetryCallState, wait_random_exponential

from tracesynth.errors import TeacherError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
STATUS_KIND = {
    400: "bad_request",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    422: "unprocessable",
    429: "rate_limited",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


TRANSPORT_KINDS = frozenset({"connection", "dropped", "timeout", "protocol"})
BODY_KINDS = frozenset({"malformed", "error_body", "empty_choices"})
UNHEALTHY_KINDS = TRANSPORT_KINDS | frozenset(
    {"server_error", "bad_gateway", "unavailable", "gateway_timeout", "rate_limited"}
)
# 4xx kinds that come from the request itself (model name, parameters, route): the same for every item
REQUEST_KINDS = frozenset({"bad_request", "not_found", "unprocessable", "http_405", "too_large"})
BATCH_ERROR = "batch_error"  # a batch result line with an error and no status we know
BUDGET_STOP = "budget"  # the budget had no room for another attempt after one that may have been billed


class ItemError(TeacherError):
    """One request failed in a way that is kept on its Sample (``kind``, a short reason)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        possibly_billed: int = 0,
        attempts: int = 1,
        endpoint: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.possibly_billed = possibly_billed
        self.attempts = attempts
        self.endpoint = endpoint


class BudgetRefused(TeacherError):
    """The budget has no room for another attempt of this request (the request stays pending)."""

    def __init__(self, message: str, *, attempts: int, last_kind: str, endpoint: str = "") -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_kind = last_kind
        self.endpoint = endpoint


class Transient(TeacherError):
    """A retryable failure of one attempt (never escapes the client: becomes an ItemError)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        possibly_billed: bool = False,
        endpoint_fault: bool = True,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.possibly_billed = possibly_billed
        self.endpoint_fault = endpoint_fault  # counts toward benching the endpoint (not 429s)


def kind_of_status(status: int) -> str:
    return STATUS_KIND.get(status, f"http_{status}")


def retry_after_s(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (delta seconds or HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


class WaitRetryAfter:
    """tenacity wait: the server's Retry-After when it gave one, else jittered exponential backoff."""

    def __init__(self, base_s: float = 0.5, max_s: float = 60.0) -> None:
        self.max_s = max_s
        self.fallback = wait_random_exponential(multiplier=base_s, max=max_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            # a little jitter so a burst of 429s does not come back as one burst
            return min(self.max_s, after) + random.uniform(0.0, min(0.25, after * 0.1))
        return self.fallback(retry_state)
