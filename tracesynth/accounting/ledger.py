"""The ledger of a harvest: money spent, money possibly billed, money reserved by attempts in flight, and the cap.

The budget rule: an attempt may start only if
``spent + possibly_billed + reserved + its_worst_case <= budget_usd``. Every attempt that may be
billed reserves its own worst case first — a request retried six times reserves six times — and
when an attempt fails in a way that may still have been billed (a timeout after the request was
sent, a body lost or malformed after a 200) its worst case moves from *reserved* to *possibly
billed*, where it stays. So spend never passes the cap unless a server bills more than it was asked
for, and the cap holds whatever usage a server reports (see :func:`~tracesynth.accounting.tokens.trusted_usage`).

A ledger starts where the run folder is (:meth:`Ledger.from_spend`): spent and possibly billed money
of earlier runs count against the same budget.

:class:`Reservations` is that rule for concurrent callers (the harvest engine, the model passes): an
attempt that does not fit waits for attempts in flight to settle, one that would not fit even alone is
refused; :meth:`Reservations.gate` is the per-request gate the teacher client calls around each attempt.

This module does arithmetic (and waits for reservations); it makes no requests and writes no files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tracesynth.accounting.tokens import TokenCounts
from tracesynth.records import Usage

if TYPE_CHECKING:
    from tracesynth.accounting.spend import Spend

_EPS = 1e-12


@dataclass
class Ledger:
    """Money of one run folder and its cap (see the module docstring)."""

    budget_usd: float | None = None
    spent_usd: float = 0.0
    possibly_billed_usd: float = 0.0
    reserved_usd: float = 0.0
    truncated_usd: float = 0.0  # part of spent_usd: answers cut at max_tokens
    failed_usd: float = 0.0  # part of spent_usd: billed calls that ended in an item error
    retried_usd: float = 0.0  # part of spent_usd: re-asks of truncated samples (--retry-truncated)
    estimated_usd: float = 0.0  # part of spent_usd: charged from tracesynth's estimate of the usage
    tokens: TokenCounts = field(default_factory=TokenCounts)
    refused: int = 0

    @classmethod
    def from_spend(cls, spend: Spend, budget_usd: float | None) -> Ledger:
        """A ledger that starts where the run folder is (cumulative money, breakdown and tokens)."""
        return cls(
            budget_usd,
            spent_usd=spend.spent_usd,
            possibly_billed_usd=spend.possibly_billed_usd,
            truncated_usd=spend.truncated_usd,
            failed_usd=spend.failed_usd,
            retried_usd=spend.retried_usd,
            estimated_usd=spend.estimated_usd,
            tokens=TokenCounts(**vars(spend.tokens)),
        )

    def committed(self) -> float:
        return self.spent_usd + self.possibly_billed_usd + self.reserved_usd

    def fits(self, worst_usd: float) -> bool:
        return self.budget_usd is None or self.committed() + worst_usd <= self.budget_usd + _EPS

    def try_reserve(self, worst_usd: float) -> bool:
        """Reserve an attempt's worst case; False (and nothing reserved) if it could break the cap."""
        if not self.fits(worst_usd):
            self.refused += 1
            return False
        self.reserved_usd += worst_usd
        return True

    def release(self, reserved_usd: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)

    def settle_attempt(self, reserved_usd: float, *, possibly_billed: bool) -> float:
        """An attempt ended without a usable answer: release its reservation, keeping it as possibly
        billed when it may have been; returns the possibly billed amount."""
        self.release(reserved_usd)
        if possibly_billed:
            self.possibly_billed_usd += reserved_usd
            return reserved_usd
        return 0.0

    def charge(
        self,
        usage: Usage,
        cost_usd: float,
        *,
        truncated: bool = False,
        failed: bool = False,
        retried: bool = False,
        estimated: bool = False,
    ) -> None:
        self.spent_usd += cost_usd
        if truncated:
            self.truncated_usd += cost_usd
        if failed:
            self.failed_usd += cost_usd
        if retried:
            self.retried_usd += cost_usd
        if estimated:
            self.estimated_usd += cost_usd
        self.tokens.add(usage)

    @property
    def exhausted(self) -> bool:
        return self.refused > 0

    def spend_line(self) -> str:
        """Spend by kind and reasoning vs answer tokens, for progress lines."""
        t = self.tokens
        est = f", estimated ${self.estimated_usd:.4f}" if self.estimated_usd else ""
        return (
            f"truncated ${self.truncated_usd:.4f}, failed ${self.failed_usd + self.possibly_billed_usd:.4f} "
            f"(possibly billed), retried ${self.retried_usd:.4f}{est}; tokens: reasoning {t.reasoning:,}, "
            f"answer {t.answer:,}"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "budget_usd": self.budget_usd,
            "spent_usd": round(self.spent_usd, 6),
            "possibly_billed_usd": round(self.possibly_billed_usd, 6),
            "committed_usd": round(self.spent_usd + self.possibly_billed_usd, 6),
            "truncated_usd": round(self.truncated_usd, 6),
            "failed_usd": round(self.failed_usd, 6),
            "retried_usd": round(self.retried_usd, 6),
            "estimated_usd": round(self.estimated_usd, 6),
            "tokens": self.tokens.as_dict(),
        }


class Reservations:
    """Per-attempt reservations against one ledger, shared by the concurrent requests of one run."""

    def __init__(self, ledger: Ledger, *, stopping: Callable[[], bool], refused: Callable[[], None]) -> None:
        self.ledger, self.stopping, self.refused = ledger, stopping, refused
        self._settled = asyncio.Event()  # set whenever an attempt gives its reservation back

    async def reserve(self, worst: float) -> bool:
        """Reserve one attempt's worst case, waiting for attempts in flight to settle; False: refused
        (``refused()`` was called: it would not fit even alone, or the run is stopping)."""
        if self.ledger.budget_usd is None:
            return True
        while not self.ledger.try_reserve(worst):
            if self.ledger.reserved_usd <= 1e-12 or self.stopping():
                self.refused()
                return False
            self._settled.clear()
            await self._settled.wait()
        return True

    def gate(self, worst: float) -> Gate:
        return Gate(self, worst)


class Gate:
    """One request's reservation, attempt by attempt (the teacher client's ``AttemptGate``); ``billed`` is
    what its attempts may have cost without an answer."""

    __slots__ = ("billed", "held", "reservations", "worst")

    def __init__(self, reservations: Reservations, worst: float) -> None:
        self.reservations, self.worst, self.held, self.billed = reservations, worst, False, 0.0

    async def admit(self) -> bool:
        self.held = await self.reservations.reserve(self.worst)
        return self.held

    def settle(self, *, possibly_billed: bool) -> None:
        if self.held:
            self.held = False
            r = self.reservations
            self.billed += r.ledger.settle_attempt(self.worst, possibly_billed=possibly_billed)
            r._settled.set()


__all__ = ["Gate", "Ledger", "Reservations"]
