"""The one writer of harvest rows: every Sample and every failure row of every mode is built here.

* :meth:`Writer.sample` — one answered request (online, a batch result line, an ingested file):
  the usage is checked (:func:`tracesynth.accounting.tokens.trusted_usage`: missing, negative or
  absurd usage is replaced by an estimate from the text and the sample flagged ``usage_estimated``,
  with one warning per run), priced, charged to the ledger (truncated, retried and estimated spend
  counted apart) and appended to ``samples.jsonl``. Money an earlier attempt may have been billed is
  kept on the row (``metadata.possibly_billed_usd``), so a resumed ledger finds it again. A reply
  that cannot even form a Sample (a field of the wrong type) becomes a failure row (``malformed``).
* :meth:`Writer.failure` — an item error kept for audit in ``failures.jsonl`` (kind, reason, endpoint,
  possibly billed money); it counts toward ``teacher.item_retries`` on resume. With a batch ``tag``
  at most one row is written per (sample id, batch), so ingesting a file twice adds nothing.

``entry`` is what a request carries besides its answer (:meth:`~tracesynth.stages.harvest.plan.PendingRequest.entry`,
also the line of a batch map file). This module writes rows; it sends nothing and plans nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from tracesynth.accounting.ledger import Ledger
from tracesynth.accounting.prices import Prices
from tracesynth.accounting.tokens import USAGE_ESTIMATED, trusted_usage
from tracesynth.records import Sample, Usage
from tracesynth.rundir.store import JsonlFile, RunStore
from tracesynth.teacher.parse import Choice


class Writer:
    """Append the rows of one harvest to the run store (see the module docstring)."""

    def __init__(
        self,
        store: RunStore,
        *,
        model: str,
        prices: Prices | None,
        ledger: Ledger,
        endpoint: str,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.samples: JsonlFile[Sample] = store.samples
        self.failures: JsonlFile[Sample] = store.failures
        self.model, self.prices, self.ledger, self.endpoint = model, prices, ledger, endpoint
        self.say = say or (lambda _msg: None)
        self.counts: Counter[str] = Counter()  # new, truncated, failed, estimated, duplicate, error:<kind>
        self._failed_keys: set[tuple[str, str]] | None = None
        self._warned = False

    # -- samples --------------------------------------------------------------------------------
    def sample(
        self,
        entry: dict[str, Any],
        choice: Choice,
        usage: Usage | None,
        *,
        served: str | None = None,
        tag: str | None = None,
        meta: dict[str, Any] | None = None,
        endpoint: str | None = None,
        latency_s: float = 0.0,
        attempts: int = 1,
        billed_usd: float = 0.0,
        choices: int = 1,
    ) -> Sample | None:
        """Append the Sample of one answered request and charge the ledger (None: written as a failure)."""
        text = (choice.reasoning or "") + (choice.content or "")
        usage, why = trusted_usage(
            usage,
            text=text,
            prompt_estimate=int(entry.get("prompt_tokens") or 0),
            max_tokens=entry.get("max_tokens"),
            choices=choices,
        )
        cost = self.prices.cost(usage) if self.prices else 0.0
        md: dict[str, Any] = {**(meta or {}), **({"batch": tag} if tag else {}), **(entry.get("meta") or {})}
        if entry.get("max_tokens"):
            md["max_tokens"] = entry["max_tokens"]
        flags = list(choice.flags)
        if why is not None:
            flags.append(USAGE_ESTIMATED)
            md["usage_estimated_because"] = why
            self._warn_estimated(why)
        if flags:
            md["flags"] = flags
        if attempts > 1:
            md["attempts"] = attempts
        if billed_usd:
            md["possibly_billed_usd"] = billed_usd
        if served and served != self.model:
            md["served_model"] = served
        try:
            s = Sample(
                id=entry["id"],
                problem_id=entry["problem_id"],
                index=entry["index"],
                model=self.model,
                reasoning=choice.reasoning,
                content=choice.content,
                finish_reason=choice.finish_reason,
                usage=usage,
                latency_s=round(latency_s, 4),
                cost_usd=cost,
                endpoint=endpoint or self.endpoint,
                attempt=entry.get("attempt", 1),
                supersedes=entry.get("supersedes"),
                metadata=md,
            )
        except ValidationError as exc:  # a reply no Sample can hold: an item error, never a crashed run
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            self.failure(
                entry,
                "malformed",
                f"unusable reply: {where}: {err['msg']}",
                tag=tag,
                meta=meta,
                endpoint=endpoint,
                billed_usd=billed_usd + cost,
            )
            self.ledger.charge(usage, cost, failed=True, estimated=why is not None)
            return None
        self.samples.append(s)
        truncated = choice.finish_reason == "length"
        self.ledger.charge(
            usage, cost, truncated=truncated, retried=entry.get("supersedes") is not None, estimated=why is not None
        )
        self.counts["new"] += 1
        if truncated:
            self.counts["truncated"] += 1
        if why is not None:
            self.counts["estimated"] += 1
        return s

    def _warn_estimated(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            self.say(
                f"warning: the teacher's usage cannot be trusted ({why}); charging an estimate from the text "
                f"(the request's worst case when there is none) and flagging such samples {USAGE_ESTIMATED}"
            )

    # -- failures -------------------------------------------------------------------------------
    def _failed(self) -> set[tuple[str, str]]:
        """(sample id, batch tag) of failure rows already written by batch ingestion."""
        if self._failed_keys is None:
            self._failed_keys = set()
            for row in self.failures.iter():
                tag = row.metadata.get("batch")
                if tag:
                    self._failed_keys.add((row.id, tag))
        return self._failed_keys

    def failure(
        self,
        entry: dict[str, Any],
        kind: str,
        reason: str,
        *,
        tag: str | None = None,
        meta: dict[str, Any] | None = None,
        endpoint: str | None = None,
        billed_usd: float = 0.0,
    ) -> None:
        """Append a failure row; with a batch ``tag``, at most one per (sample id, batch)."""
        if tag is not None:
            key = (entry["id"], tag)
            if key in self._failed():
                self.counts["duplicate"] += 1
                return
            self._failed().add(key)
        md = {**(meta or {}), **({"batch": tag} if tag else {}), **(entry.get("meta") or {})}
        if billed_usd:
            md["possibly_billed_usd"] = billed_usd
        self.failures.append(
            Sample(
                id=entry["id"],
                problem_id=entry["problem_id"],
                index=entry["index"],
                model=self.model,
                error=" ".join(str(reason).split())[:500],
                error_kind=kind,
                endpoint=endpoint or self.endpoint,
                attempt=entry.get("attempt", 1),
                supersedes=entry.get("supersedes"),
                metadata=md,
            )
        )
        self.counts["failed"] += 1
        self.counts[f"error:{kind}"] += 1

    def errors_by_kind(self) -> dict[str, int]:
        return {k[6:]: v for k, v in self.counts.items() if k.startswith("error:")}


__all__ = ["Writer"]
