"""The teacher side of harvesting: client, response normalisation, flow control, retries, prices.

* :mod:`~tracesynth.teacher.client` — :class:`TeacherClient` (``chat``, ``complete``), ``split_reasoning``
* :mod:`~tracesynth.teacher.parse` — reasoning / answer / usage from any OpenAI-compatible body
* :mod:`~tracesynth.teacher.limits` — concurrency (AIMD), RPM / RPS / TPM buckets, x-ratelimit headers
* :mod:`~tracesynth.teacher.retry` — what is retried, Retry-After, :class:`ItemError`
* :mod:`~tracesynth.teacher.pricing` — price table, cost of a call, :class:`Ledger` and the budget cap
* :mod:`~tracesynth.teacher.http`, :mod:`~tracesynth.teacher.endpoints` — transports, endpoint pool

Nothing here writes to the run folder; :mod:`tracesynth.harvest` does.
"""

from __future__ import annotations

from tracesynth.accounting.prices import PRICE_TABLE, Ledger, Prices, prices_for
from tracesynth.teacher.client import ChatResult, TeacherClient, estimate_tokens, sampling_params
from tracesynth.teacher.limits import FlowControl
from tracesynth.teacher.parse import Choice, MalformedResponse, normalise_message, split_reasoning, split_think
from tracesynth.teacher.retry import ItemError

__all__ = [
    "PRICE_TABLE",
    "ChatResult",
    "Choice",
    "FlowControl",
    "ItemError",
    "Ledger",
    "MalformedResponse",
    "Prices",
    "TeacherClient",
    "estimate_tokens",
    "normalise_message",
    "prices_for",
    "sampling_params",
    "split_reasoning",
    "split_think",
]
