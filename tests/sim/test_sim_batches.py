"""The simulated teacher's files and batches APIs, driven by the official openai client."""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai.types.chat import ChatCompletion

from tracesynth.sim import SimTeacher


def client(sim: SimTeacher) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0, timeout=10)


def request(cid: str, content: str = "What is 2 + 3?", **body: object) -> dict:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": content}], **body},
    }


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def wait_for(c: openai.OpenAI, batch_id: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        b = c.batches.retrieve(batch_id)
        if b.status in ("completed", "failed", "expired", "cancelled") or time.monotonic() > deadline:
            return b
        time.sleep(0.02)


def test_files_upload_list_retrieve_content_delete(tmp_path) -> None:
    with SimTeacher() as sim:
        c = client(sim)
        data = jsonl([request("a")])
        f = c.files.create(file=("in.jsonl", data), purpose="batch")
        path = tmp_path / "second.jsonl"
        path.write_bytes(data * 2)
        with path.open("rb") as fh:
            g = c.files.create(file=fh, purpose="batch")  # a file handle: streamed with a length
        other = c.files.create(file=("notes.txt", b"x"), purpose="user_data")
        assert (f.filename, f.bytes, f.purpose, g.filename, g.bytes) == (
            "in.jsonl",
            len(data),
            "batch",
            "second.jsonl",
            2 * len(data),
        )
        assert c.files.content(f.id).content == data
        assert c.files.retrieve(g.id).id == g.id
        assert {x.id for x in c.files.list(purpose="batch")} == {f.id, g.id} and other.id not in {
            x.id for x in c.files.list(purpose="batch")
        }
        assert c.files.delete(f.id).deleted
        with pytest.raises(openai.NotFoundError):
            c.files.retrieve(f.id)


def test_batch_round_trip_with_errors_in_the_error_file() -> None:
    with SimTeacher(batch_delay_s=0.1, batch_error_rate=0.25, seed=1) as sim:
        c = client(sim)
        rows = [request(f"r{i}", f"What is {i} + 3?", max_tokens=500) for i in range(16)]
        rows.append(request("bad", temperature=5))  # the endpoint rejects it: 400 in the error file
        f = c.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch")
        b = c.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"run": "x"}
        )
        assert (b.status, b.request_counts.total, b.metadata) == ("in_progress", 17, {"run": "x"})
        b = wait_for(c, b.id)
        assert b.status == "completed" and b.completed_at is not None
        out = [json.loads(x) for x in c.files.content(b.output_file_id).content.decode().splitlines()]
        err = [json.loads(x) for x in c.files.content(b.error_file_id).content.decode().splitlines()]
        assert len(out) + len(err) == 17 and b.request_counts.completed == len(out) >= 8
        assert {o["custom_id"] for o in out} | {e["custom_id"] for e in err} == {r["custom_id"] for r in rows}
        for o in out:
            assert o["error"] is None and o["response"]["status_code"] == 200
            done = ChatCompletion.model_validate(o["response"]["body"])
            assert "\\boxed{" in (done.choices[0].message.content or "")
        codes = {e["custom_id"]: e["response"]["status_code"] for e in err}
        assert codes.pop("bad") == 400 and set(codes.values()) <= {500} and len(codes) >= 1


def test_list_pagination_cancel_and_invalid_files() -> None:
    with SimTeacher(batch_delay_s=30) as sim:
        c = client(sim)
        good = c.files.create(file=("in.jsonl", jsonl([request("a"), request("b")])), purpose="batch")
        ids = [
            c.batches.create(input_file_id=good.id, endpoint="/v1/chat/completions", completion_window="24h").id
            for _ in range(3)
        ]
        assert [b.id for b in c.batches.list(limit=2)] == ids[::-1]  # newest first, across pages
        cancelled = c.batches.cancel(ids[0])
        assert cancelled.status == "cancelling" and c.batches.retrieve(ids[0]).status == "cancelled"
        with pytest.raises(openai.ConflictError):
            c.batches.cancel(ids[0])
        dup = c.files.create(file=("d.jsonl", jsonl([request("a"), request("a"), {"custom_id": "x"}])), purpose="batch")
        failed = c.batches.create(input_file_id=dup.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert failed.status == "failed"
        assert [(e.code, e.line) for e in failed.errors.data] == [("duplicate_custom_id", 2), ("invalid_request", 3)]
        with pytest.raises(openai.BadRequestError):
            c.batches.create(input_file_id=good.id, endpoint="/v1/embeddings", completion_window="24h")
        with pytest.raises(openai.NotFoundError):
            c.batches.retrieve("batch_nope")
        assert failed.request_counts.total == 0
        assert sim.stats()["batches"] == {"created": 4, "requests": 6, "cancelled": 1}


def test_expiry_keeps_what_was_done_and_lists_the_rest() -> None:
    with SimTeacher(batch_delay_s=1.0, batch_expire_s=0.25) as sim:
        c = client(sim)
        f = c.files.create(file=("in.jsonl", jsonl([request(f"r{i}") for i in range(8)])), purpose="batch")
        b = wait_for(
            c, c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id
        )
        assert b.status == "expired" and b.expired_at is not None
        out = c.files.content(b.output_file_id).content.decode().splitlines()
        err = [json.loads(x) for x in c.files.content(b.error_file_id).content.decode().splitlines()]
        assert (len(out), len(err)) == (2, 6)
        assert all(e["response"] is None and e["error"]["code"] == "batch_expired" for e in err)
        assert (b.request_counts.completed, b.request_counts.failed) == (2, 6)
