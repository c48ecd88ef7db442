"""Verification beside a running event loop: samples go in as they arrive, verdicts come back as futures.

:class:`VerifierPool` is what sampling until verified (:mod:`tracesynth.stages.harvest.until`) uses to
verify each reply while the harvest goes on. It runs the verify stage's own worker function
(:func:`~tracesynth.stages.verify.stage.work_chunk`) in the verify stage's own process pool
(:func:`~tracesynth.stages.verify.stage._new_pool`), so a verdict is the one ``tracesynth verify``
would write, with the same hard CPU limit per sample:

* samples submitted in the same turn of the event loop go to the workers together, in chunks of at
  most ``chunk_size`` (one round trip per chunk, not per sample), with at most two chunks per worker
  in flight; the rest wait in order;
* a worker that dies (a pathological answer killing it inside C code) breaks the pool: the pool is
  rebuilt off the event loop and the samples of the broken chunks are re-run one at a time; one
  that kills its worker alone gets ``unverifiable`` verdicts (``timeout`` / ``verifier_error``),
  exactly as the verify stage does;
* the pool is started by :meth:`VerifierPool.start` before the event loop runs (forked from a
  process with one thread); :meth:`close` stops it.

This module schedules verification; it writes nothing (the caller records the verdicts).
"""

from __future__ import annotations

import asyncio
import importlib
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tracesynth.records import Verdict
from tracesynth.stages.verify.stage import Item, _died_verdicts, _new_pool, work_chunk

_Pending = tuple[Item, "asyncio.Future[list[Verdict]]"]  # an item and where its verdicts go


class VerifierPool:
    """Verify items in worker processes from async code (see the module docstring)."""

    def __init__(
        self,
        options: dict[str, dict[str, Any]],
        *,
        workers: int,
        chunk_size: int = 8,
        preload: tuple[str, ...] = (),
    ) -> None:
        self.options, self.workers, self.chunk_size, self.preload = options, workers, chunk_size, preload
        self._pool: ProcessPoolExecutor | None = None
        self._waiting: deque[_Pending] = deque()
        self._inflight = 0
        self._flush_scheduled = False
        self._repairing: asyncio.Task[None] | None = None
        self._suspects: deque[_Pending] = deque()
        self._idle = asyncio.Event()  # no chunk in flight (set when the last one ends)
        self.restarts = 0

    def start(self) -> VerifierPool:
        for name in self.preload:
            importlib.import_module(name)
        self._pool = _new_pool(self.workers, self.preload)
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> VerifierPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self, item: Item) -> asyncio.Future[list[Verdict]]:
        """The verdicts of one item (a future of the running loop)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Verdict]] = loop.create_future()
        self._waiting.append((item, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return fut

    # -- scheduling ------------------------------------------------------------------------
    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._repairing is not None:
            return  # the rebuilt pool flushes when it is ready
        while self._waiting and self._inflight < 2 * self.workers:
            batch = [self._waiting.popleft() for _ in range(min(self.chunk_size, len(self._waiting)))]
            self._submit(batch)

    def _submit(self, batch: list[_Pending]) -> None:
        assert self._pool is not None, "VerifierPool.start() first"
        loop = asyncio.get_running_loop()
        self._inflight += len(batch)
        try:
            cf: Future[list[Verdict]] = self._pool.submit(work_chunk, [item for item, _ in batch], self.options)
        except (BrokenProcessPool, RuntimeError):
            self._inflight -= len(batch)
            self._broken(batch)
            return
        asyncio.wrap_future(cf, loop=loop).add_done_callback(lambda f: self._done(f, batch))

    def _done(self, fut: asyncio.Future[list[Verdict]], batch: list[_Pending]) -> None:
        self._inflight -= len(batch)
        if not self._inflight:
            self._idle.set()
        if fut.cancelled():
            for _, out in batch:
                out.cancel()
            return
        exc = fut.exception()
        if isinstance(exc, BrokenProcessPool):
            self._broken(batch)
            return
        if exc is not None:  # a bug in the worker function: the callers see it
            for _, out in batch:
                if not out.done():
                    out.set_exception(exc)
            return
        _deliver(batch, fut.result())
        self._flush()

    def _broken(self, batch: list[_Pending]) -> None:
        self._suspects.extend(batch)
        if self._repairing is None:
            self._idle.clear() if self._inflight else self._idle.set()
            self._repairing = asyncio.get_running_loop().create_task(self._repair())

    async def _rebuild(self) -> None:
        loop = asyncio.get_running_loop()
        old, self._pool = self._pool, None
        if old is not None:
            await loop.run_in_executor(None, lambda: old.shutdown(wait=True, cancel_futures=True))
        self._pool = await loop.run_in_executor(None, lambda: _new_pool(self.workers, self.preload))
        self.restarts += 1

    async def _repair(self) -> None:
        """Rebuild the pool (off the event loop), then re-run the suspects one at a time: one that
        kills its worker alone gets the verify stage's unverifiable verdicts."""
        loop = asyncio.get_running_loop()
        try:
            await self._idle.wait()  # the other chunks of the broken pool fail too and join the suspects
            await self._rebuild()
            while self._suspects:
                item, out = self._suspects.popleft()
                assert self._pool is not None
                t0 = loop.time()
                try:
                    verdicts = await asyncio.wrap_future(self._pool.submit(work_chunk, [item], self.options))
                except BrokenProcessPool:
                    verdicts = _died_verdicts(item, loop.time() - t0, self.options)
                    await self._rebuild()
                _deliver([(item, out)], verdicts)
        finally:
            self._repairing = None
        self._flush()


def _deliver(batch: list[_Pending], verdicts: list[Verdict]) -> None:
    by_sample: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_sample.setdefault(v.sample_id, []).append(v)
    for item, out in batch:
        if not out.done():
            out.set_result(by_sample.get(item[1].id, []))


__all__ = ["VerifierPool"]
