"""The OpenAI files and batches APIs for the simulated teacher, so batch harvesting is tested offline.

Routes (shapes as the official ``openai`` client sends and parses them):

* ``POST /v1/files`` (multipart/form-data: ``purpose`` and ``file``), ``GET /v1/files``
  (``purpose``, ``after``, ``limit``, ``order``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content`` (the raw bytes), ``DELETE /v1/files/{id}``;
* ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``, ``metadata``),
  ``GET /v1/batches`` (newest first, ``after`` / ``limit``), ``GET /v1/batches/{id}``,
  ``POST /v1/batches/{id}/cancel``.

Time is simulated lazily (no background task): a batch is ``in_progress`` from creation until
``batch_delay_s`` has passed, then ``completed`` the next time anyone looks at it. Requests are
answered by the same solver and engine as ``/v1/chat/completions`` (no faults or rate limits);
a seeded ``batch_error_rate`` share of them (drawn per batch and custom_id, so a resubmission draws
again) ends in the error file as HTTP 500, and a request the endpoint would reject (bad params)
ends there with its 400. With ``batch_expire_s`` shorter than the delay the batch ``expired``:
the requests "done" by then (in file order, pro rata) are in the output file, the rest in the error
file with code ``batch_expired``. A cancelled batch keeps the requests done before the cancel in its
output file; the others are in neither file. An input file with a bad line or a duplicate
``custom_id`` makes the batch ``failed`` with ``errors`` naming the line.

Counters go to the app's ``/stats`` under ``batches`` and ``files``. Nothing is persisted.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from tracesynth.sim import engine
from tracesynth.sim.http import Connection, Request, response
from tracesynth.sim.tokens import count_chat_prompt, count_tokens, message_text

if TYPE_CHECKING:
    from tracesynth.sim.server import SimApp

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
_FINAL = ("completed", "failed", "expired", "cancelled")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass
class SimFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class SimBatch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int
    started: float  # monotonic
    lines: list[dict[str, Any]]
    status: str = "in_progress"
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    times: dict[str, int | None] = field(default_factory=dict)

    def obj(self) -> dict[str, Any]:
        t = self.times
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": ({"object": "list", "data": self.errors} if self.errors else None),
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": t.get("in_progress_at"),
            "expires_at": self.created_at + 86_400,
            "finalizing_at": t.get("finalizing_at"),
            "completed_at": t.get("completed_at"),
            "failed_at": t.get("failed_at"),
            "expired_at": t.get("expired_at"),
            "cancelling_at": t.get("cancelling_at"),
            "cancelled_at": t.get("cancelled_at"),
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
        }


def _ok(obj: Any) -> bytes:
    return response(200, json.dumps(obj).encode())


def _query(req: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(req.query).items()}


class BatchService:
    """Files and batches state plus the route handlers, registered on a :class:`SimApp`."""

    def __init__(self, app: SimApp) -> None:
        self.app = app
        self.opts = app.opts
        self.files: dict[str, SimFile] = {}
        self.batches: dict[str, SimBatch] = {}
        self._file_ids = itertools.count(1)
        self._batch_ids = itertools.count(1)
        self._req_ids = itertools.count(1)
        app.stats.c["batches"] = {}
        app.stats.c["files"] = {}
        r = app.route
        r("POST", "/v1/files")(self.upload)
        r("GET", "/v1/files")(self.list_files)
        r("GET", "/v1/files/{file_id}")(self.get_file)
        r("DELETE", "/v1/files/{file_id}")(self.delete_file)
        r("GET", "/v1/files/{file_id}/content")(self.file_content)
        r("POST", "/v1/batches")(self.create)
        r("GET", "/v1/batches")(self.list_batches)
        r("GET", "/v1/batches/{batch_id}")(self.retrieve)
        r("POST", "/v1/batches/{batch_id}/cancel")(self.cancel)

    # -- files ---------------------------------------------------------------------------------
    def _new_file(self, filename: str, purpose: str, data: bytes) -> SimFile:
        f = SimFile(f"file-sim{next(self._file_ids):06d}", filename, purpose, data, int(time.time()))
        self.files[f.id] = f
        return f

    def _file(self, file_id: str) -> SimFile:
        from tracesynth.sim.server import ApiError

        f = self.files.get(file_id)
        if f is None:
            raise ApiError(404, f"No such File object: {file_id}", "id", "not_found")
        return f

    def upload(self, req: Request, conn: Connection) -> bytes:
        from tracesynth.sim.server import ApiError

        ctype = req.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(400, "Uploads must be multipart/form-data with 'purpose' and 'file'.")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + req.body
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True)
                fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
        if "purpose" not in fields:
            raise ApiError(400, "Missing required parameter: 'purpose'.", "purpose")
        if "file" not in fields:
            raise ApiError(400, "Missing required parameter: 'file'.", "file")
        purpose = fields["purpose"][1].decode()
        filename, data = fields["file"]
        f = self._new_file(filename or "upload", purpose, data)
        self.app.stats.bump("files", "uploaded")
        return _ok(f.obj())

    def list_files(self, req: Request, conn: Connection) -> bytes:
        q = _query(req)
        items = sorted(self.files.values(), key=lambda f: f.id, reverse=q.get("order", "desc") == "desc")
        if q.get("purpose"):
            items = [f for f in items if f.purpose == q["purpose"]]
        return _ok(self._page(items, q, 10_000))

    def get_file(self, req: Request, conn: Connection, file_id: str) -> bytes:
        return _ok(self._file(file_id).obj())

    def delete_file(self, req: Request, conn: Connection, file_id: str) -> bytes:
        self._file(file_id)
        del self.files[file_id]
        return _ok({"id": file_id, "object": "file", "deleted": True})

    def file_content(self, req: Request, conn: Connection, file_id: str) -> bytes:
        return response(200, self._file(file_id).data, content_type="application/octet-stream")

    @staticmethod
    def _page(items: list[Any], q: dict[str, str], max_limit: int) -> dict[str, Any]:
        from tracesynth.sim.server import ApiError

        try:
            limit = min(max_limit, max(1, int(q.get("limit", "20" if max_limit <= 100 else str(max_limit)))))
        except ValueError:
            raise ApiError(400, "'limit' must be an integer", "limit") from None
        ids = [x.id for x in items]
        start = ids.index(q["after"]) + 1 if q.get("after") in ids else 0
        page = items[start : start + limit]
        return {
            "object": "list",
            "data": [x.obj() for x in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": start + limit < len(items),
        }

    # -- batches -------------------------------------------------------------------------------
    def create(self, req: Request, conn: Connection) -> bytes:
        from tracesynth.sim.server import ApiError, _json

        body = _json(req)
        fid, endpoint, window = body.get("input_file_id"), body.get("endpoint"), body.get("completion_window")
        if not isinstance(fid, str):
            raise ApiError(400, "Missing required parameter: 'input_file_id'.", "input_file_id")
        f = self._file(fid)
        if f.purpose != "batch":
            raise ApiError(400, f"File {fid} has purpose {f.purpose!r}; batches need purpose 'batch'.", "input_file_id")
        if endpoint not in ENDPOINTS:
            raise ApiError(400, f"Unsupported endpoint {endpoint!r}; use one of {', '.join(ENDPOINTS)}.", "endpoint")
        if window != "24h":
            raise ApiError(400, "completion_window must be '24h'.", "completion_window")
        meta = body.get("metadata")
        if meta is not None and (
            not isinstance(meta, dict) or len(meta) > 16 or not all(isinstance(v, str) for v in meta.values())
        ):
            raise ApiError(400, "metadata must be at most 16 string key-value pairs.", "metadata")
        now = int(time.time())
        b = SimBatch(f"batch_sim{next(self._batch_ids):06d}", fid, endpoint, window, meta, now, time.monotonic(), [])
        b.times["in_progress_at"] = now
        b.lines, b.errors = _parse_input(f.data, endpoint)
        if b.errors:  # validation failed: nothing runs
            b.status, b.times["failed_at"] = "failed", now
            b.lines = []
        b.counts["total"] = len(b.lines)
        self.batches[b.id] = b
        self.app.stats.bump("batches", "created")
        self.app.stats.bump("batches", "requests", b.counts["total"])
        return _ok(b.obj())

    def _batch(self, batch_id: str) -> SimBatch:
        from tracesynth.sim.server import ApiError

        b = self.batches.get(batch_id)
        if b is None:
            raise ApiError(404, f"No such Batch object: {batch_id}", "batch_id", "not_found")
        return self._advance(b)

    def retrieve(self, req: Request, conn: Connection, batch_id: str) -> bytes:
        return _ok(self._batch(batch_id).obj())

    def list_batches(self, req: Request, conn: Connection) -> bytes:
        items = [self._advance(b) for b in sorted(self.batches.values(), key=lambda b: b.id, reverse=True)]
        return _ok(self._page(items, _query(req), 100))

    def cancel(self, req: Request, conn: Connection, batch_id: str) -> bytes:
        from tracesynth.sim.server import ApiError

        b = self._batch(batch_id)
        if b.status in _FINAL:
            raise ApiError(409, f"Cannot cancel a batch with status {b.status!r}.", code="batch_not_cancellable")
        if b.status == "in_progress":
            done = self._done_share(b)
            self._finish(b, math.floor(len(b.lines) * done), "cancelled")
            b.status, b.times["cancelling_at"] = "cancelling", int(time.time())  # 'cancelled' from the next look
            self.app.stats.bump("batches", "cancelled")
        return _ok(b.obj())

    # -- processing ----------------------------------------------------------------------------
    def _done_share(self, b: SimBatch) -> float:
        delay = self.opts.batch_delay_s
        return 1.0 if delay <= 0 else min(1.0, (time.monotonic() - b.started) / delay)

    def _advance(self, b: SimBatch) -> SimBatch:
        if b.status == "cancelling":
            b.status, b.times["cancelled_at"] = "cancelled", int(time.time())
            return b
        if b.status != "in_progress":
            return b
        elapsed, delay, expire = time.monotonic() - b.started, self.opts.batch_delay_s, self.opts.batch_expire_s
        if expire is not None and expire < delay and elapsed >= expire:
            self._finish(b, math.floor(len(b.lines) * expire / delay), "expired")
            self.app.stats.bump("batches", "expired")
        elif elapsed >= delay:
            self._finish(b, len(b.lines), "completed")
            self.app.stats.bump("batches", "completed")
        return b

    def _finish(self, b: SimBatch, done: int, status: str) -> None:
        """Answer the first ``done`` lines; write the output and error files; set the final status."""
        out: list[bytes] = []
        err: list[bytes] = []
        for pos, line in enumerate(b.lines):
            rid = f"batch_req_sim{next(self._req_ids):08d}"
            if pos >= done:
                if status == "expired":
                    err.append(
                        _line(rid, line["custom_id"], None, {"code": "batch_expired", "message": EXPIRED_MESSAGE})
                    )
                    b.counts["failed"] += 1
                continue
            status_code, body = self._answer(b, line)
            target = out if status_code == 200 else err
            target.append(
                _line(rid, line["custom_id"], {"status_code": status_code, "request_id": rid, "body": body}, None)
            )
            b.counts["completed" if status_code == 200 else "failed"] += 1
        now = int(time.time())
        if out:
            b.output_file_id = self._new_file(f"{b.id}_output.jsonl", "batch_output", b"".join(out)).id
        if err:
            b.error_file_id = self._new_file(f"{b.id}_error.jsonl", "batch_output", b"".join(err)).id
        b.status = status
        b.times["finalizing_at"] = now
        b.times[f"{status}_at"] = now
        b.lines = []

    def _answer(self, b: SimBatch, line: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of one request, as the online endpoint would answer it (without faults)."""
        from tracesynth.sim.server import ApiError, _full_body

        key = f"{self.opts.seed}:{b.id}:{line['custom_id']}".encode()
        u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
        if u < self.opts.batch_error_rate:
            return 500, {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        body = line["body"]
        app = self.app
        try:
            p = app._params(body)
            if b.endpoint == "/v1/chat/completions":
                messages = body.get("messages")
                if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                    raise ApiError(400, "'messages' must be a non-empty list of message objects", "messages")
                users = [m for m in messages if m.get("role") == "user"] or messages
                choices = engine.chat_choices(
                    app.solver,
                    message_text(users[-1].get("content")),
                    self.opts.reasoning,
                    p["n"],
                    p["max_tokens"],
                    p["stop"],
                    p["seed"],
                    p["temperature"],
                )
                kind, prompt_tokens = "chat", count_chat_prompt(messages)
            else:
                prompt = body.get("prompt")
                if not isinstance(prompt, str):
                    raise ApiError(400, "'prompt' must be a string", "prompt")
                choices = engine.completion_choices(
                    app.solver, prompt, p["n"], p["max_tokens"], p["stop"], p["seed"], p["temperature"]
                )
                kind, prompt_tokens = "text", count_tokens(prompt)
        except ApiError as exc:
            return exc.status, {
                "error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
            }
        completion = sum(c.completion_tokens for c in choices)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }
        if kind == "chat":
            usage["completion_tokens_details"] = {"reasoning_tokens": sum(c.reasoning_tokens for c in choices)}
        st = app.stats.c
        st["prompt_tokens"] += prompt_tokens
        st["completion_tokens"] += completion
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-simb{next(self._req_ids):08d}"
        return 200, _full_body(kind, rid, p["model"], choices, usage, "ok")


def _line(rid: str, custom_id: str, resp: dict[str, Any] | None, error: dict[str, Any] | None) -> bytes:
    return (json.dumps({"id": rid, "custom_id": custom_id, "response": resp, "error": error}) + "\n").encode()


def _parse_input(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate a batch input file → (request lines, errors) as OpenAI reports them (``line`` is 1-based)."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for no, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            errors.append(
                {"code": "invalid_json_line", "line": no, "message": "This line is not valid JSON.", "param": None}
            )
            continue
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        if not isinstance(cid, str) or obj.get("method") != "POST" or not isinstance(obj.get("body"), dict):
            errors.append(
                {
                    "code": "invalid_request",
                    "line": no,
                    "param": None,
                    "message": "Each line needs custom_id (string), method POST, url and body (object).",
                }
            )
            continue
        if obj.get("url") != endpoint:
            errors.append(
                {
                    "code": "mismatched_endpoint",
                    "line": no,
                    "param": "url",
                    "message": f"url {obj.get('url')!r} does not match the batch endpoint {endpoint!r}.",
                }
            )
            continue
        if cid in seen:
            errors.append(
                {
                    "code": "duplicate_custom_id",
                    "line": no,
                    "param": "custom_id",
                    "message": f"The custom_id {cid!r} is not unique in this file.",
                }
            )
            continue
        seen.add(cid)
        lines.append(obj)
    if not lines and not errors:
        errors.append({"code": "empty_file", "line": None, "param": None, "message": "The input file is empty."})
    return lines, errors
