"""Ask an OpenAI-compatible model about each record of a run, with the harvest's money rules.

The one engine of the model passes — ``rewrite`` (Sky-T1's reformatting of each kept trace) and
``classify`` (s1's domain label of each problem). A pass gives :func:`run_pass` a stream of
:class:`Job` (the record's key, the messages to send, and a ``judge`` that turns the reply into the
row to keep or raises :class:`Unusable`); this module does the rest the way the harvest does it:

* one :class:`~tracesynth.teacher.client.TeacherClient` (transport, endpoint pool, concurrency,
  rate buckets and retries are the client's; nothing is retried here);
* money: a :class:`~tracesynth.accounting.ledger.Ledger` with the pass's own ``budget_usd``, starting
  from what the pass's rows already cost (:func:`tracesynth.accounting.passes.scan_pass`); every
  attempt reserves its worst case through an :class:`~tracesynth.teacher.client.AttemptGate` before
  it starts, a reservation that cannot fit even alone stops the pass (status ``budget``), usage is
  checked with :func:`~tracesynth.accounting.tokens.trusted_usage` and priced with
  :mod:`tracesynth.accounting.prices` (a model at a non-provider URL is self-hosted, $0);
* resume: ``<rows>.jsonl`` is keyed by the record's id and a key in it is never asked again; an
  item error (endpoint gave up, reply unusable, judge refused it) is a row of
  ``<pass>_failures.jsonl`` and the record is asked again on a later run until it has failed more
  than ``item_retries`` times. Rows are appended one whole line each right after their reply.
* failing fast: when the first replies are all refusals of the request itself (unknown model, bad
  URL) the pass stops with that reason instead of paying for the rest; 401/403 stops it at once.

The key is read from the environment variable the section names and never written anywhere.
This module does not decide what to ask nor what a reply means (the passes do), and writes no
stage summary but the pass's own ``<pass>.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tracesynth.accounting.ledger import Ledger, Reservations
from tracesynth.accounting.passes import scan_pass
from tracesynth.accounting.prices import Prices, require_prices
from tracesynth.accounting.tokens import DEFAULT_WORST_OUTPUT_TOKENS, PROMPT_MARGIN, trusted_usage
from tracesynth.config.schema import PassConfig
from tracesynth.errors import AuthError, TeacherError, TemplateError
from tracesynth.records import Usage
from tracesynth.rundir.jsonio import json_lines, write_json
from tracesynth.rundir.layout import PASS_FILES
from tracesynth.rundir.store import JsonlFile, RunStore
from tracesynth.sources.resources import prompts_dir
from tracesynth.teacher.client import TeacherClient, estimate_tokens
from tracesynth.teacher.limits import FlowControl
from tracesynth.teacher.parse import Choice
from tracesynth.teacher.retry import REQUEST_KINDS, BudgetRefused, ItemError

Status = Literal["complete", "budget", "failed", "nothing"]
_FIRST_WAVE = 8  # refusals of the request itself before any answer: the rest would be refused too
_FIELD = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


class Unusable(Exception):
    """A reply the pass cannot use: an item error of that record (``kind`` is its tag)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class Job:
    """One record to ask about."""

    key: str
    messages: list[dict[str, Any]]
    judge: Callable[[Choice], dict[str, Any]]  # the row fields to keep; raises Unusable
    meta: dict[str, Any] = field(default_factory=dict)  # written on the row and on failure rows


@dataclass
class PassResult:
    name: str
    status: Status = "complete"
    asked: int = 0  # records sent this run
    done: int = 0  # rows written this run
    errors: int = 0  # item errors this run
    done_before: int = 0
    left: int = 0  # records not asked (budget, fail-fast)
    spent_usd: float = 0.0  # this pass in this run folder, all runs
    possibly_billed_usd: float = 0.0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    message: str = ""
    wall_s: float = 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.errors_by_kind.items()))
        line = (
            f"{self.name}: {self.status}; {self.done} new ({self.done_before} before), {self.errors} item errors"
            f"{f' ({kinds})' if kinds else ''}, ${self.spent_usd:.4f} spent"
            f"{f' (+${self.possibly_billed_usd:.4f} possibly billed)' if self.possibly_billed_usd else ''}"
        )
        return line + (f"; {self.message}" if self.message else "")

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- prompts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PassPrompt:
    """A pass's prompt file: optional ``[system]`` then ``[user]`` text with ``{{ field }}`` placeholders."""

    name: str
    system: str | None
    user: str

    def messages(self, **fields: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.system:
            out.append({"role": "system", "content": self._fill(self.system, fields)})
        out.append({"role": "user", "content": self._fill(self.user, fields)})
        return out

    def _fill(self, text: str, fields: dict[str, str]) -> str:
        def sub(m: re.Match[str]) -> str:
            return fields[m.group(1)]  # every placeholder was checked when the file was loaded

        return _FIELD.sub(sub, text)


def load_prompt(section: str, prompt: str, required: tuple[str, ...]) -> PassPrompt:
    """The prompt file of a pass (a ``prompts/`` name or a path); every placeholder must be one of
    ``required`` and every required one must appear (else nothing of the record would be sent)."""
    looks_like_path = "/" in prompt or prompt.endswith((".txt", ".md", ".tmpl"))
    path = Path(prompt).expanduser() if looks_like_path else prompts_dir() / f"{prompt}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{section}.prompt: {prompt}: cannot read ({type(exc).__name__})") from None
    parts: dict[str, list[str]] = {}
    current = "user"
    for line in text.splitlines():
        if line.strip() in ("[system]", "[user]"):
            current = line.strip()[1:-1]
            parts[current] = []
            continue
        parts.setdefault(current, []).append(line)
    system = "\n".join(parts.get("system", [])).strip() or None
    user = "\n".join(parts.get("user", [])).strip()
    if not user:
        raise TemplateError(f"{section}.prompt: {prompt}: the user message is empty")
    used = {m.group(1) for m in _FIELD.finditer((system or "") + "\n" + user)}
    unknown = sorted(used - set(required))
    if unknown:
        raise TemplateError(f"{section}.prompt: {prompt}: unknown field {unknown[0]!r} (fields: {', '.join(required)})")
    missing = [f for f in required if f not in used]
    if missing:
        raise TemplateError(f"{section}.prompt: {prompt}: no {{{{ {missing[0]} }}}} placeholder")
    return PassPrompt(prompt, system, user)


# -- the engine -------------------------------------------------------------------------------
def failure_counts(store: RunStore, name: str) -> Counter[str]:
    """Item errors per key of pass ``name`` so far."""
    path = store.layout.jsonl(PASS_FILES[name][1])
    return Counter(str(r.get("id")) for r in json_lines(path))


class _Engine:
    def __init__(self, name: str, cfg: PassConfig, store: RunStore, prices: Prices | None, ledger: Ledger) -> None:
        self.name, self.cfg, self.prices, self.ledger = name, cfg, prices, ledger
        rows_name, failures_name = PASS_FILES[name]
        self.rows: JsonlFile[Any] = store.file(rows_name)
        self.failures: JsonlFile[Any] = store.file(failures_name, key=None)
        self.result = PassResult(name)
        self.kinds: Counter[str] = Counter()
        self.reservations = Reservations(ledger, stopping=lambda: self.stop is not None, refused=self._refused)
        self.stop: str | None = None
        self.fatal: BaseException | None = None
        self.refusals = 0
        self.first_refusal: ItemError | None = None

    def _refused(self) -> None:
        self.stop = self.stop or "budget"

    def _fail(self, job: Job, kind: str, reason: str, *, cost: float = 0.0, billed: float = 0.0, **extra: Any) -> None:
        self.failures.append(
            {
                "id": job.key,
                **job.meta,
                "kind": kind,
                "reason": reason[:500],
                "model": self.cfg.model,
                "cost_usd": cost,
                "possibly_billed_usd": billed,
                "created_at": time.time(),
                **extra,
            }
        )
        self.result.errors += 1
        self.kinds[kind] += 1

    async def one(self, client: TeacherClient, job: Job) -> None:
        max_tokens = self.cfg.sampling.max_tokens
        prompt_est = estimate_tokens(job.messages)
        worst = (
            self.prices.worst_case(prompt_est * PROMPT_MARGIN, max_tokens or DEFAULT_WORST_OUTPUT_TOKENS)
            if self.prices
            else 0.0
        )
        gate = self.reservations.gate(worst)
        self.result.asked += 1
        try:
            reply = await client.chat(job.messages, sampling=self.cfg.sampling, gate=gate)
        except BudgetRefused as exc:
            self.result.left += 1
            self.result.asked -= 1
            if gate.billed:  # earlier attempts may have been billed: that money stays on a row
                self._fail(job, "budget", f"stopped for the budget after {exc.attempts} attempts", billed=gate.billed)
            self.stop = self.stop or "budget"
            return
        except ItemError as exc:
            self._fail(job, exc.kind, str(exc), billed=gate.billed)
            if exc.kind in REQUEST_KINDS and self.result.done == 0:
                self.refusals += 1
                self.first_refusal = self.first_refusal or exc
                if self.refusals >= min(_FIRST_WAVE, self.cfg.concurrency + 1):
                    where = ", ".join(self.cfg.base_urls)
                    self.fatal = TeacherError(f"{self.name}: {self.cfg.model} at {where}: {exc}")
                    self.stop = "error"
            return
        except AuthError as exc:
            self.fatal, self.stop = exc, "error"
            return
        choice = reply.choices[0] if reply.choices else Choice(0, None, "", None)
        text = (choice.reasoning or "") + (choice.content or "")
        usage, why = trusted_usage(reply.usage, text=text, prompt_estimate=prompt_est, max_tokens=max_tokens)
        cost = self.prices.cost(usage) if self.prices else 0.0
        try:
            if choice.finish_reason == "length":
                raise Unusable("truncated", f"the reply was cut at max_tokens ({max_tokens})")
            row = job.judge(choice)
        except Unusable as exc:
            self.ledger.charge(usage, cost, failed=True, estimated=why is not None)
            self._fail(job, exc.kind, str(exc), cost=cost, billed=gate.billed, usage=usage.model_dump())
            return
        except Exception as exc:  # a reply the judge chokes on is that record's error, never a crashed pass
            self.ledger.charge(usage, cost, failed=True, estimated=why is not None)
            self._fail(job, "unusable", f"{type(exc).__name__}: {exc}", cost=cost, billed=gate.billed)
            return
        self.ledger.charge(usage, cost, estimated=why is not None)
        self.rows.append(
            {
                "id": job.key,
                **job.meta,
                **row,
                "model": self.cfg.model,
                "served_model": reply.model,
                "usage": usage.model_dump(),
                "usage_estimated_because": why,
                "cost_usd": cost,
                "possibly_billed_usd": gate.billed,
                "created_at": time.time(),
            }
        )
        self.result.done += 1

    async def run(self, jobs: Iterable[Job], base_urls: list[str]) -> None:
        cfg = self.cfg
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        flow = FlowControl(cfg.concurrency, rpm=cfg.rpm, tpm=cfg.tpm)
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=2 * cfg.concurrency)
        async with TeacherClient(
            base_urls,
            model=cfg.model,
            api_key=key or None,
            api_key_env=cfg.api_key_env,
            timeout_s=cfg.timeout_s,
            concurrency=cfg.concurrency,
            max_attempts=cfg.max_attempts,
            flow=flow,
            http=cfg.http,
        ) as client:

            async def worker() -> None:
                while True:
                    job = await queue.get()
                    try:
                        if job is None:
                            return
                        if self.stop is not None:
                            self.result.left += 1
                        else:
                            await self.one(client, job)
                    finally:
                        queue.task_done()

            workers = [asyncio.create_task(worker()) for _ in range(cfg.concurrency)]
            try:
                for job in jobs:
                    if self.stop is not None:
                        self.result.left += 1
                        continue
                    await queue.put(job)
                for _ in workers:
                    await queue.put(None)
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)


@contextlib.contextmanager
def _endpoints(cfg: PassConfig) -> Iterator[list[str]]:
    """The pass's base URLs, or a simulated teacher's started for it (``sim.enabled``: toy runs, tests)."""
    if not cfg.sim.enabled:
        yield list(cfg.base_urls)
        return
    from tracesynth.sim import SimTeacher

    with SimTeacher(**cfg.sim.options) as sim:
        yield [sim.base_url]


def pass_prices(name: str, cfg: PassConfig) -> Prices | None:
    """The pass's prices; ConfigError naming ``<name>.budget_usd`` when a cap cannot be computed."""
    return require_prices(cfg.model, cfg.prices, cfg.budget_usd, cfg.base_urls, field=name)


def run_pass(name: str, cfg: PassConfig, store: RunStore, jobs: Iterable[Job]) -> PassResult:
    """Ask every job not done yet (see the module docstring); writes ``<name>.json`` and returns the result.

    Raises :class:`~tracesynth.errors.AuthError` on 401/403 and TeacherError when the endpoint refused
    the first requests themselves (what was written stays)."""
    t0 = time.perf_counter()
    prices = pass_prices(name, cfg)
    before = scan_pass(store.layout, name)
    ledger = Ledger(cfg.budget_usd, spent_usd=before.spent_usd, possibly_billed_usd=before.possibly_billed_usd)
    engine = _Engine(name, cfg, store, prices, ledger)
    res = engine.result
    res.done_before = len(engine.rows)
    fails = failure_counts(store, name)

    def todo() -> Iterable[Job]:
        for job in jobs:
            if job.key in engine.rows or fails.get(job.key, 0) > cfg.item_retries:
                continue
            yield job

    try:
        with _endpoints(cfg) as urls:
            asyncio.run(engine.run(todo(), urls))
    finally:
        engine.rows.sync()
        res.errors_by_kind = dict(engine.kinds)
        res.spent_usd = round(ledger.spent_usd, 6)
        res.possibly_billed_usd = round(ledger.possibly_billed_usd, 6)
        if engine.fatal is not None:
            res.status, res.message = "failed", " ".join(str(engine.fatal).split())[:300]
        elif engine.stop == "budget":
            res.status = "budget"
            res.message = (
                f"budget ${cfg.budget_usd:g} reached ({res.left} records not asked): raise {name}.budget_usd and "
                "re-run to continue"
            )
        elif res.asked == 0:
            res.status = "nothing"
        if prices is not None and prices.self_hosted:
            res.message = (res.message + "; " if res.message else "") + f"note: {prices.source}"
        res.wall_s = round(time.perf_counter() - t0, 3)
        write_json(store.layout.pass_json(name), {**res.as_dict(), "prices": prices.as_dict() if prices else None})
    if engine.fatal is not None:
        raise engine.fatal
    return res


def usage_of(row: dict[str, Any]) -> Usage:
    """The usage stored on a pass row."""
    return Usage(**(row.get("usage") or {}))


__all__ = [
    "Job",
    "PassPrompt",
    "PassResult",
    "Unusable",
    "failure_counts",
    "load_prompt",
    "pass_prices",
    "run_pass",
    "usage_of",
]
