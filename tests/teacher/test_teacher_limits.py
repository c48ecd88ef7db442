"""Flow control, retry waits, prices, ledger and endpoint pool — pure units, no network."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from tracesynth.accounting.ledger import Ledger
from tracesynth.accounting.prices import Prices, lookup, prices_for, require_prices
from tracesynth.config import PricesConfig, SamplingConfig
from tracesynth.errors import ConfigError
from tracesynth.records import Usage
from tracesynth.teacher.client import sampling_params
from tracesynth.teacher.endpoints import EndpointPool
from tracesynth.teacher.limits import AdaptiveLimit, FlowControl, TokenBucket, parse_reset
from tracesynth.teacher.retry import Transient, WaitRetryAfter, retry_after_s


# -- token buckets ---------------------------------------------------------------------------
def test_bucket_paces_at_its_rate_and_allows_debt() -> None:
    b = TokenBucket(rate=10.0, capacity=10.0)
    now = time.monotonic()
    assert b.wait_s(10, now) == 0
    b.take(10)
    assert b.wait_s(5, now) == pytest.approx(0.5, abs=0.02)
    # a cost larger than the bucket waits for a full bucket, then goes into debt
    big = TokenBucket(rate=100.0, capacity=100.0)
    big.take(100)
    assert big.wait_s(1000) == pytest.approx(1.0, abs=0.05)
    big.level = 100.0
    big.take(1000)
    assert big.level == -900.0 and big.wait_s(1) > 8.9
    big.refund(850)  # actual usage was smaller than the estimate
    assert big.level == pytest.approx(-50.0, abs=1.0)


async def test_flow_control_rps_limits_throughput() -> None:
    flow = FlowControl(100, rps=20)
    t0 = time.monotonic()

    async def one() -> None:
        p = await flow.acquire()
        flow.release(p)

    await asyncio.gather(*(one() for _ in range(30)))
    # 20 allowed at once (capacity), the other 10 at 20/s
    assert 0.4 < time.monotonic() - t0 < 1.5


async def test_separate_output_tpm_bucket_is_corrected_by_actual_usage() -> None:
    flow = FlowControl(10, output_tpm=60_000)  # 1000 output tokens per second
    p = await flow.acquire(est_in=50, est_out=1000)
    assert flow.buckets["output_tpm"].level == pytest.approx(0.0, abs=5)
    flow.release(p, actual_in=50, actual_out=100)  # 900 refunded
    assert flow.buckets["output_tpm"].level == pytest.approx(900.0, abs=20)
    assert "input_tpm" not in flow.buckets and "tpm" not in flow.buckets


def test_ratelimit_headers_lower_limits_and_pause() -> None:
    flow = FlowControl(10, rpm=600)
    flow.observe_headers(
        {
            "x-ratelimit-limit-requests": "120",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1.5s",
            "x-ratelimit-limit-tokens": "90000",
        }
    )
    assert flow.learned == {"rpm": 120.0, "tpm": 90000.0}
    assert flow.buckets["rpm"].rate == pytest.approx(2.0)
    assert flow.buckets["rpm"].wait_s(1) > 1.0  # paused until the reset
    flow.observe_headers({"x-ratelimit-limit-requests": "6000"})  # never raised above the recipe
    assert flow.buckets["rpm"].rate == pytest.approx(2.0)


@pytest.mark.parametrize(
    "text, seconds",
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2.5", 2.5), ("", None), ("soon", None)],
)
def test_parse_reset(text: str, seconds: float | None) -> None:
    assert parse_reset(text) == (pytest.approx(seconds) if seconds is not None else None)


# -- adaptive concurrency --------------------------------------------------------------------
async def test_aimd_halves_on_429_once_per_cooldown_and_recovers_to_full() -> None:
    lim = AdaptiveLimit(64, cooldown_s=10.0)
    lim.on_overload()
    lim.on_overload()  # same burst: counted once
    assert lim.limit == 32 and lim.decreases == 1
    for _ in range(40):
        lim.on_success()
    assert lim.limit == 64  # back to full speed once the pressure ends


async def test_adaptive_limit_caps_in_flight_and_wakes_waiters() -> None:
    lim = AdaptiveLimit(2)
    peak = 0

    async def one() -> None:
        nonlocal peak
        await lim.acquire()
        peak = max(peak, lim.in_use)
        await asyncio.sleep(0.01)
        lim.release()

    await asyncio.gather(*(one() for _ in range(10)))
    assert peak == 2 and lim.in_use == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    lim = AdaptiveLimit(1)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    lim.release()
    assert lim.in_use == 0
    await asyncio.wait_for(lim.acquire(), 1)


async def test_a_waiter_cancelled_just_before_its_slot_frees_leaves_cleanly() -> None:
    """The race a Ctrl-C hit with many waiters: release() drops the cancelled future before the waiter
    handles its cancellation (this raised ValueError out of the cancelled task)."""
    lim = AdaptiveLimit(1)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    lim.release()  # same loop step: _wake pops the already-cancelled future
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert lim.in_use == 0 and not lim._waiters
    await asyncio.wait_for(lim.acquire(), 1)


async def test_retries_are_served_before_first_attempts() -> None:
    lim = AdaptiveLimit(1)
    await lim.acquire()
    order: list[str] = []

    async def one(name: str, first: bool) -> None:
        await lim.acquire(first=first)
        order.append(name)
        lim.release()

    tasks = [asyncio.create_task(one("new-1", False)), asyncio.create_task(one("new-2", False))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(one("retry", True)))
    await asyncio.sleep(0)
    lim.release()
    await asyncio.gather(*tasks)
    assert order == ["retry", "new-1", "new-2"]


# -- retry waits -----------------------------------------------------------------------------
def test_retry_after_headers() -> None:
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_wait_honours_retry_after_else_backs_off_exponentially() -> None:
    wait = WaitRetryAfter(base_s=1.0, max_s=30.0)

    def state(exc: Exception, n: int) -> SimpleNamespace:
        return SimpleNamespace(outcome=SimpleNamespace(exception=lambda: exc), attempt_number=n)

    w = wait(state(Transient("rate_limited", "429", retry_after=2.0), 1))  # type: ignore[arg-type]
    assert 2.0 <= w <= 2.25
    assert wait(state(Transient("rate_limited", "429", retry_after=500.0), 1)) <= 30.25  # type: ignore[arg-type]
    waits = [wait(state(Transient("server_error", "500"), n)) for n in range(1, 6)]  # type: ignore[arg-type]
    assert all(0 <= x <= 30 for x in waits) and max(waits) > 0


# -- prices and ledger -----------------------------------------------------------------------
def test_cost_splits_cached_input_and_reasoning() -> None:
    p = Prices(input=1.0, output=4.0, cached_input=0.25, reasoning=8.0)
    u = Usage(prompt_tokens=1_000_000, cached_tokens=400_000, completion_tokens=2_000_000, reasoning_tokens=500_000)
    assert p.cost(u) == pytest.approx(0.6 * 1 + 0.4 * 0.25 + 1.5 * 4 + 0.5 * 8)
    assert Prices(1.0, 2.0).cost(u) == pytest.approx(1.0 + 4.0)  # cached and reasoning default to input/output
    assert p.worst_case(1000, 10_000) == pytest.approx((1000 * 1 + 10_000 * 8) / 1e6)


def test_price_table_lookup_and_override() -> None:
    assert lookup("deepseek/deepseek-r1").output == 2.50
    assert lookup("DeepSeek-R1") == lookup("deepseek/deepseek-r1")
    assert lookup("deepseek-reasoner") is None  # retired 2026-07-24, and not R1 since 2025-08-21
    assert lookup("o4-mini-2025-04-16") == lookup("o4-mini")
    assert lookup("my-local-model") is None
    assert prices_for("o4-mini", PricesConfig(input=9, output=9)).input == 9
    with pytest.raises(ConfigError, match=r"teacher\.budget_usd.*teacher\.prices"):
        require_prices("my-local-model", None, budget_usd=5.0, base_urls=["https://openrouter.ai/api/v1"])
    assert require_prices("my-local-model", None, budget_usd=None) is None
    local = prices_for("my-local-model", None, ["http://gpu-box:8000/v1"])
    assert local is not None and local.self_hosted and local.cost(Usage(prompt_tokens=10**6)) == 0.0


def test_every_shipped_price_names_its_source_and_date_and_batch_prices_only_where_a_batch_api_exists() -> None:
    from tracesynth.accounting.prices import PRICE_TABLE

    for name, p in PRICE_TABLE.items():
        assert p.source and len(p.as_of) == 10 and p.as_of[:2] == "20", name
    assert not lookup("deepseek-v4-flash").batch and not lookup("deepseek/deepseek-r1").batch
    assert lookup("gpt-4o-mini").batch


def test_no_batch_price_at_a_provider_without_a_batch_api_even_with_recipe_prices() -> None:
    own = PricesConfig(input=0.28, output=0.42)
    assert not prices_for("deepseek-chat", own, ["https://api.deepseek.com/v1"]).batch
    assert not prices_for("gpt-4o-mini", None, ["https://openrouter.ai/api/v1"]).batch  # a batch row, routed
    assert prices_for("gpt-4o-mini", None, ["https://api.openai.com/v1"]).batch
    assert prices_for("o4-mini", own, ["https://api.openai.com/v1"]).batch
    assert prices_for("sim-reasoner", own, ["http://127.0.0.1:8000/v1"]).batch  # your own server: as you set it


def test_ledger_refuses_what_could_break_the_budget() -> None:
    led = Ledger(budget_usd=1.0, spent_usd=0.5)
    assert led.try_reserve(0.3)
    assert not led.try_reserve(0.3)  # 0.5 + 0.3 + 0.3 > 1.0
    led.release(0.3)
    led.charge(Usage(prompt_tokens=10, completion_tokens=20), 0.1, truncated=True)
    led.reserved_usd += 0.2
    led.settle_attempt(0.2, possibly_billed=True)  # a timed-out attempt: its worst case stays committed
    assert led.committed() == pytest.approx(0.8)
    assert led.try_reserve(0.2) and not led.try_reserve(0.01)
    assert led.summary()["truncated_usd"] == pytest.approx(0.1)
    assert Ledger(budget_usd=None).try_reserve(1e9)


# -- sampling parameters and endpoints -------------------------------------------------------
def test_sampling_params_drop_none_merge_extra_body_and_offset_seed() -> None:
    s = SamplingConfig(
        temperature=0.6,
        top_p=None,
        max_tokens=100,
        seed=7,
        extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}},
    )
    p = sampling_params(s, n=3, seed_offset=2, model="qwen")
    assert p == {
        "temperature": 0.6,
        "max_tokens": 100,
        "seed": 9,
        "n": 3,
        "top_k": 20,
        "chat_template_kwargs": {"enable_thinking": True},
    }
    assert sampling_params({"max_tokens": 50}, model="o4-mini") == {"max_completion_tokens": 50}


def test_endpoint_pool_least_loaded_and_benching() -> None:
    pool = EndpointPool(["http://a/v1", "http://b/v1/"], bench_after=2, bench_s=60)
    a, b = pool.endpoints
    assert b.url == "http://b/v1"
    a.in_flight = 3
    assert pool.pick() is b
    pool.fail(b)
    pool.fail(b)
    assert pool.benched() == ["http://b/v1"] and pool.pick() is a
    pool.fail(a)
    pool.fail(a)  # both benched: the one whose bench ends first is still used
    assert pool.pick() in (a, b)
    single = EndpointPool(["http://only/v1"], bench_after=1)
    single.fail(single.endpoints[0])
    assert single.benched() == [] and single.pick() is single.endpoints[0]
