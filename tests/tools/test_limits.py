import asyncio
import time

from bot.base.config import parse_config
from tools.execute import take_slot
from tools.limits import CircuitBreaker, RateLimiter, ServerGuard


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_window() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock)
    assert limiter.reserve(budget=1) == 0 and limiter.reserve(budget=1) == 0
    assert limiter.reserve(budget=1) is None  # the next slot is 60 s away
    clock.t += 30
    assert limiter.reserve(budget=45) == 30  # waits for the oldest slot to leave the window
    clock.t += 61
    assert limiter.reserve(budget=0) == 0


def test_no_rate_limit() -> None:
    limiter = RateLimiter(None)
    assert all(limiter.reserve(0) == 0 for _ in range(1000))


def test_breaker_opens_cools_down_and_half_opens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=60, clock=clock)
    for _ in range(2):
        assert breaker.admit()
        breaker.failure()
    assert breaker.state == "closed"
    assert breaker.admit()
    breaker.failure()
    assert breaker.state == "open" and not breaker.admit()
    clock.t += 60
    assert breaker.state == "half-open"
    assert breaker.admit()  # the one trial call
    assert not breaker.admit()  # others wait for its outcome
    breaker.failure()
    assert breaker.state == "open"  # a failed trial reopens at once
    clock.t += 60
    assert breaker.admit()
    breaker.success()
    assert breaker.state == "closed" and breaker.admit()


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failures=2, cooldown=60)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == "closed"


async def test_a_slot_is_taken_at_once_when_free_and_waited_for_until_the_deadline() -> None:
    guard = ServerGuard.for_server(
        "rec", parse_config({"gateway": {"servers": {"rec": {"max_concurrency": 1}}}}).gateway
    )
    assert not await take_slot(guard, time.monotonic() - 0.01)  # no time left: not taken
    assert not guard.slots.locked()
    assert await take_slot(guard, time.monotonic() + 1) and guard.slots.locked()
    started = time.monotonic()
    assert not await take_slot(guard, started + 0.05)  # taken: gives up at the deadline
    assert 0.04 <= time.monotonic() - started < 1
    asyncio.get_running_loop().call_later(0.05, guard.slots.release)
    assert await take_slot(guard, time.monotonic() + 5)  # freed while it waits
    guard.slots.release()
    assert not guard.slots.locked()
