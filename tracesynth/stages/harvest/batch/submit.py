"""Talk to a provider's files and batches APIs with the official ``openai`` client, crash-safely.

``openai.OpenAI(base_url=..., max_retries=N)``: ``files.create(purpose="batch")``,
``batches.create(completion_window="24h", metadata=...)``, ``batches.retrieve`` / ``list`` /
``cancel``, and ``files.with_streaming_response.content(...).stream_to_file`` for results (never
held in memory). The SDK retries connection errors, 408/409/429/5xx on these calls itself —
except ``batches.create``, which is sent with ``max_retries=0``: a create whose response was lost may
still have made a batch, so before trying again :meth:`BatchAPI.submit` *lists* the batches and
adopts the one whose metadata names this run and file. Restarting after a crash does the same for a
logged intent without a batch id, and looks for an already uploaded file by its name, so no request
is ever submitted twice (:mod:`.state`).

Errors: 401/403 → :class:`~tracesynth.errors.AuthError` naming the endpoint and the *name* of the
key's variable; 404 on ``/files`` → a :class:`~tracesynth.errors.TeacherError` saying the endpoint
has no batch API (vLLM's OpenAI server has none: use ``--export-batch`` + ``vllm run-batch`` +
``--ingest``); anything else the SDK gave up on → TeacherError with the endpoint and status.
Keys never appear in messages.

This module moves files and batch objects; it writes only the event log and downloaded files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tracesynth.config import Recipe
from tracesynth.errors import AuthError, TeacherError
from tracesynth.stages.harvest.batch.state import BatchRecord, BatchState

T = TypeVar("T")
META_RUN, META_BATCH = "tracesynth_run", "tracesynth_batch"


class BatchAPIError(TeacherError):
    """A files / batches call failed after the SDK's retries; ``transient`` when a later poll may succeed."""

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


class BatchAPI:
    """The files + batches endpoints of one provider (see module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        api_key_env: str | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 5,
        completion_window: str = "24h",
        create_attempts: int = 6,
        backoff_s: float = 1.0,
    ) -> None:
        import openai

        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self._has_key = bool(api_key)
        self.openai = openai
        self.client = openai.OpenAI(
            api_key=api_key or "EMPTY", base_url=self.base_url, max_retries=max_retries, timeout=timeout_s
        )
        self.window = completion_window
        self.create_attempts = create_attempts
        self.backoff_s = backoff_s

    @classmethod
    def from_recipe(cls, recipe: Recipe, base_url: str | None = None) -> BatchAPI:
        t = recipe.teacher
        key = os.environ.get(t.api_key_env) if t.api_key_env else None
        return cls(
            base_url or t.batch.base_url or t.base_urls[0],
            api_key=key or None,
            api_key_env=t.api_key_env,
            timeout_s=min(t.timeout_s, 600.0),
            max_retries=max(0, t.max_attempts - 1),
            completion_window=t.batch.completion_window,
            backoff_s=min(t.backoff_base_s * 2, 5.0),
        )

    # -- error mapping -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except self.openai.OpenAIError as exc:
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: Exception) -> Exception:
        o = self.openai
        if isinstance(exc, (o.AuthenticationError, o.PermissionDeniedError)):
            hint = (
                f"no API key set: export {self.api_key_env}"
                if self.api_key_env and not self._has_key
                else f"check the key in ${self.api_key_env}"
                if self.api_key_env
                else "set teacher.api_key_env to the name of the variable holding the key"
            )
            return AuthError(
                f"{self.base_url}: HTTP {exc.status_code} on {what}: the endpoint refused the credentials ({hint})"
            )
        missing = isinstance(exc, o.NotFoundError) or (isinstance(exc, o.APIStatusError) and exc.status_code == 405)
        if missing and what in ("upload", "list files", "create batch", "list batches"):
            return BatchAPIError(
                f"{self.base_url}: HTTP 404 on {what}: this endpoint has no files/batches API (vLLM's server "
                f"has none: use `tracesynth harvest RECIPE --export-batch DIR`, `vllm run-batch`, then "
                f"`--ingest OUT.jsonl`)"
            )
        if isinstance(exc, o.APIStatusError):
            return BatchAPIError(
                f"{self.base_url}: HTTP {exc.status_code} on {what}: {_scrub(exc)}",
                transient=exc.status_code in (408, 409, 429) or exc.status_code >= 500,
                status=exc.status_code,
            )
        if isinstance(exc, o.APIConnectionError):
            return BatchAPIError(
                f"{self.base_url}: {what} failed: {exc.__class__.__name__} (connection)", transient=True
            )
        return BatchAPIError(f"{self.base_url}: {what} failed: {exc.__class__.__name__}")

    # -- files -------------------------------------------------------------------------------------
    def upload(self, path: Path, name: str) -> str:
        with path.open("rb") as fh:
            return self._call("upload", self.client.files.create, file=(name, fh), purpose="batch").id

    def find_file(self, name: str) -> str | None:
        page = self._call("list files", self.client.files.list, purpose="batch")
        for f in page:  # the SDK's cursor page fetches further pages as it is iterated
            if f.filename == name:
                return f.id
        return None

    def file_exists(self, file_id: str) -> bool:
        try:
            self.client.files.retrieve(file_id)
        except self.openai.NotFoundError:
            return False
        except self.openai.OpenAIError as exc:
            raise self._error("retrieve file", exc) from None
        return True

    def download(self, file_id: str, dest: Path) -> Path:
        """Stream a file's content to ``dest`` (via a temporary name: a file that exists is whole)."""
        tmp = dest.with_name(dest.name + ".tmp")
        with self._call("download", self.client.files.with_streaming_response.content, file_id) as resp:
            resp.stream_to_file(tmp)
        os.replace(tmp, dest)
        return dest

    # -- batches -----------------------------------------------------------------------------------
    def find_batch(self, token: str, local: str, since: float) -> Any | None:
        """The batch whose metadata names this run and batch file (newest first; stops at older ones)."""
        for b in self._call("list batches", self.client.batches.list, limit=100):
            meta = b.metadata or {}
            if meta.get(META_RUN) == token and meta.get(META_BATCH) == local:
                return b
            if b.created_at < since - 3600:
                return None
        return None

    def retrieve(self, batch_id: str) -> Any:
        return self._call("retrieve batch", self.client.batches.retrieve, batch_id)

    def cancel(self, batch_id: str) -> Any:
        return self._call("cancel batch", self.client.batches.cancel, batch_id)

    def submit(self, state: BatchState, rec: BatchRecord, *, reconcile: bool) -> None:
        """Upload and create the batch of a logged intent, adopting what an earlier run already made."""
        if rec.batch_id is not None:
            return
        if reconcile:
            found = self.find_batch(state.token, rec.local, rec.created_t)
            if found is not None:
                # no status here: the next poll records it with the output / error file ids
                state.record("created", local=rec.local, batch_id=found.id, file_id=found.input_file_id, adopted=True)
                return
        name = state.remote_name(rec)
        file_id = rec.file_id if rec.file_id and (not reconcile or self.file_exists(rec.file_id)) else None
        if file_id is None and reconcile:
            file_id = self.find_file(name)
        if file_id is None:
            file_id = self.upload(state.path(rec.input), name)
        if file_id != rec.file_id:
            state.record("uploaded", local=rec.local, file_id=file_id)
        meta = {META_RUN: state.token, META_BATCH: rec.local}
        o = self.openai
        transient = (o.APIConnectionError, o.RateLimitError, o.InternalServerError, o.ConflictError)
        create = self.client.with_options(max_retries=0).batches.create
        b: Any
        for attempt in range(1, self.create_attempts + 1):
            try:
                b = create(
                    input_file_id=file_id,
                    endpoint="/v1/chat/completions",
                    completion_window=self.window,  # type: ignore[arg-type]
                    metadata=meta,
                )
            except transient as exc:
                if attempt == self.create_attempts:
                    raise self._error("create batch", exc) from None
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
                b = self.find_batch(state.token, rec.local, rec.created_t)  # the lost response may have made it
                if b is None:
                    continue
            except o.OpenAIError as exc:
                raise self._error("create batch", exc) from None
            state.record("created", local=rec.local, batch_id=b.id, file_id=file_id)
            return


def _scrub(exc: Exception) -> str:
    """The server's message of an SDK status error, one line, short (the SDK never echoes the key)."""
    body = getattr(exc, "body", None)
    msg = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(msg or exc).split())[:300]


__all__ = ["META_BATCH", "META_RUN", "BatchAPI", "BatchAPIError"]
