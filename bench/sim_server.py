"""Benchmark the simulated teacher: non-streaming req/s at zero latency, and many slow requests at once.

The server runs in its own process (``SimProcess``, i.e. ``tracesynth sim-teacher``); this process
is the client: raw keep-alive HTTP/1.1 over ``asyncio.Protocol`` (far cheaper than the openai SDK,
so the server is what gets measured). Every request has a different arithmetic problem, so the
solver's cache does not help. Printed ratios:

* chat req/s against the 3,000 req/s target — both wall-clock and per second of the server
  process's CPU time (read from /proc: "on one core" even when the client or other jobs share it);
* chat req/s against ``GET /health`` req/s on the same server in the same run (the ceiling of
  the HTTP layer: what JSON parsing, solving and rendering cost);
* slow requests: N concurrent requests with a fixed latency L must finish in about L, not N*L.

    .venv/bin/python bench/sim_server.py [--seconds 5] [--rounds 3] [--connections 64] [--slow 2000]
                                         [--latency 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from tracesynth.sim import SimProcess

TARGET = 3000.0


def chat_request(i: int) -> bytes:
    body = json.dumps(
        {
            "model": "sim-reasoner",
            "messages": [{"role": "user", "content": f"Calculate {1000 + i * 7} + {37 * i % 9973} - {i % 89}."}],
            "max_tokens": 4096,
            "temperature": 0.6,
        }
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer sk-bench\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Client(asyncio.Protocol):
    """One keep-alive connection sending requests back to back; counts complete responses."""

    def __init__(
        self, requests, deadline: float, done: asyncio.Future, limit: int | None = None, paused: bool = False
    ) -> None:
        self.requests, self.deadline, self.done, self.limit = requests, deadline, done, limit
        self.buf = b""
        self.count = self.errors = 0
        self.paused = paused

    def connection_made(self, transport) -> None:
        self.transport = transport
        if not self.paused:
            self.send()

    def send(self) -> None:
        if time.perf_counter() >= self.deadline or (self.limit is not None and self.count >= self.limit):
            self.transport.close()
            return
        self.transport.write(self.requests())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            i = head.find(b"content-length: ")
            j = head.find(b"\r\n", i)
            n = int(head[i + 16 : j if j > 0 else len(head)])
            if len(self.buf) < end + 4 + n:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self.errors += 1
            self.buf = self.buf[end + 4 + n :]
            self.count += 1
            self.send()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def hammer(
    port: int, make, seconds: float, connections: int, limit: int | None = None, connect_first: bool = False
) -> tuple[float, int]:
    """Run ``connections`` clients until ``seconds`` pass (or each sent ``limit``); (req/s, total).

    ``connect_first`` opens every connection before any request is sent (and starts the clock then).
    """
    loop = asyncio.get_running_loop()
    deadline = time.perf_counter() + seconds
    clients, waits = [], []
    t0 = time.perf_counter()
    for _ in range(connections):
        fut = loop.create_future()
        _, proto = await loop.create_connection(
            lambda f=fut: Client(make, deadline, f, limit, paused=connect_first), "127.0.0.1", port
        )
        clients.append(proto)
        waits.append(fut)
    if connect_first:
        t0 = time.perf_counter()
        for c in clients:
            c.send()
    await asyncio.gather(*waits)
    wall = time.perf_counter() - t0
    total = sum(c.count for c in clients)
    errors = sum(c.errors for c in clients)
    if errors:
        raise SystemExit(f"{errors} non-200 responses")
    return total / wall, total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(seconds: float, connections: int, rounds: int) -> list[dict[str, float]]:
    """``rounds`` alternating /health and chat phases on one server (the box's speed drifts between runs)."""
    counter = iter(range(10**9))
    out = []
    with SimProcess(api_key="sk-bench", seed=1, wrong_rate=0.1) as sim:
        port = int(sim.base_url.rsplit(":", 1)[1].split("/")[0])
        pid = sim.proc.pid
        asyncio.run(hammer(port, lambda: HEALTH, 1.0, connections))  # warm-up
        total = 0
        for _ in range(rounds):
            c0 = cpu_seconds(pid)
            health, nh = asyncio.run(hammer(port, lambda: HEALTH, seconds, connections))
            c1 = cpu_seconds(pid)
            chat, n = asyncio.run(hammer(port, lambda: chat_request(next(counter)), seconds, connections))
            c2 = cpu_seconds(pid)
            total += n
            out.append(
                {
                    "chat": chat,
                    "health": health,
                    "chat_cpu": n / max(c2 - c1, 1e-9),
                    "health_cpu": nh / max(c1 - c0, 1e-9),
                }
            )
        stats = sim.stats()
    assert stats["status"].get("200", 0) >= total, stats
    return out


def slow(n: int, latency: float) -> tuple[float, int]:
    counter = iter(range(10**9))
    with SimProcess(seed=1, latency=latency) as sim:
        port = int(sim.base_url.rsplit(":", 1)[1].split("/")[0])
        rate, _ = asyncio.run(hammer(port, lambda: chat_request(next(counter)), 3600, n, limit=1, connect_first=True))
        wall = n / rate
        peak = sim.stats()["max_in_flight"]
    return wall, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}; server: one process, one thread; client: one process, raw keep-alive HTTP")
    rounds = throughput(args.seconds, args.connections, args.rounds)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def span(key: str) -> str:
        return f"{min(r[key] for r in rounds):,.0f}-{max(r[key] for r in rounds):,.0f}"

    print(
        f"chat completions (non-streaming, zero latency, {args.connections} connections), median of {args.rounds}: "
        f"{med('chat'):,.0f} req/s wall ({span('chat')}), {med('chat_cpu'):,.0f} req per server CPU-second "
        f"({span('chat_cpu')})"
    )
    print(
        f"GET /health (HTTP-layer ceiling, same server): {med('health'):,.0f} req/s wall ({span('health')}), "
        f"{med('health_cpu'):,.0f} req per server CPU-second ({span('health_cpu')})"
    )
    print(
        f"ratio vs 3,000 req/s target (one core = per server CPU-second): {med('chat_cpu') / TARGET:.2f}x "
        f"(worst round {min(r['chat_cpu'] for r in rounds) / TARGET:.2f}x); wall-clock: {med('chat') / TARGET:.2f}x; "
        f"chat / health (CPU): {med('chat_cpu') / med('health_cpu'):.2f}"
    )
    wall, peak = slow(args.slow, args.latency)
    print(
        f"{args.slow} concurrent requests at {args.latency:g}s latency: all done in {wall:.2f}s "
        f"(serial would take {args.slow * args.latency:,.0f}s; peak in flight {peak}); "
        f"ratio wall/latency {wall / args.latency:.2f}"
    )


if __name__ == "__main__":
    main()
