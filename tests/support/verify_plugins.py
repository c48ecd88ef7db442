"""Custom verifiers named in recipes as ``verify_plugins:<name>`` (tests/support is on sys.path under pytest).

``stuck_in_c`` burns CPU inside one C call (OpenSSL PBKDF2) when the answer says STUCK: no
Python-level timeout can interrupt it, so only the verify stage's hard CPU limit on the worker can.
``never_sure`` finds every answer unverifiable.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.verifiers.base import Outcome, passed, unverifiable


def stuck_in_c(problem: Problem, sample: Sample, options: dict[str, Any]) -> Outcome:
    if "STUCK" in (sample.content or ""):
        hashlib.pbkdf2_hmac("sha256", b"x", b"y", 2**31 - 1)  # about an hour of CPU in one C call
    return passed(sample.content)


def never_sure(problem: Problem, sample: Sample, options: dict[str, Any]) -> Outcome:
    return unverifiable("no_reference", "this verifier cannot decide")
