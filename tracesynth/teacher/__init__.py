"""The teacher side of harvesting: client, response normalisation, flow control, retries, prices.

* :mod:`~tracesynth.teacher.client` — :class:`TeacherClient` (``chat``, ``complete``), ``split_reasoning``
* :mod:`~tracesynth.teacher.parse` — reasoning / answer / usage from any OpenAI-compatible body
* :mod:`~tracesynth.teacher.limits` — concurrency (AIMD), RPM / RPS / TPM buckets, x-ratelimit headers
* :mod:`~tracesynth.teacher.retry` — what is retried, Retry-After, :class:`ItemError`
* :mod:`~tracesynth.teacher.http`, :mod:`~tracesynth.teacher.endpoints` — transports, endpoint pool

Nothing here counts money (:mod:`tracesynth.accounting`) or writes to the run folder (:mod:`tracesynth.stages.harvest`).
"""

from __future__ import annotations

from tracesynth.teacher.client import AttemptGate, ChatResult, TeacherClient, estimate_tokens, sampling_params
from tracesynth.teacher.limits import FlowControl
from tracesynth.teacher.parse import Choice, MalformedResponse, normalise_message, split_reasoning
from tracesynth.teacher.retry import ItemError

__all__ = [
    "AttemptGate",
    "ChatResult",
    "Choice",
    "FlowControl",
    "ItemError",
    "MalformedResponse",
    "TeacherClient",
    "estimate_tokens",
    "normalise_message",
    "sampling_params",
    "split_reasoning",
]
