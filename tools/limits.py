"""Per-server protection: a calls-per-minute window and a circuit breaker.

The breaker counts failures of the *server* (a crash, a lost connection, a timeout), not
tools that answer with an error: a tool saying "no such issue" is a healthy server. After
`failures` in a row it opens and the server's tools answer "unavailable" at once for
`cooldown` seconds; then one trial call is let through (half-open) and its outcome closes
or reopens the breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bot.base.config import GatewayConfig, GatewayServerLimits


class RateLimiter:
    """A sliding one-minute window of at most `per_minute` calls."""

    WINDOW = 60.0

    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._slots: deque[float] = deque()

    def reserve(self, budget: float) -> float | None:
        """Seconds to wait before calling, or None if that is longer than `budget`."""
        if self._limit is None:
            return 0.0
        now = self._clock()
        while self._slots and self._slots[0] <= now - self.WINDOW:
            self._slots.popleft()
        if len(self._slots) < self._limit:
            self._slots.append(now)
            return 0.0
        at = self._slots[0] + self.WINDOW
        if at - now > budget:
            return None
        self._slots.popleft()
        self._slots.append(at)
        return at - now

    def next_slot_in(self) -> float:
        """Seconds until a call would be admitted without waiting."""
        if self._limit is None or len(self._slots) < self._limit:
            return 0.0
        return max(0.0, self._slots[0] + self.WINDOW - self._clock())


class CircuitBreaker:
    """Closed → open after `failures` consecutive failures → half-open after `cooldown`."""

    def __init__(
        self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self._cooldown else "open"

    def retry_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def would_admit(self) -> bool:
        """Whether a call would be let through now (without claiming the trial)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._trial)

    def admit(self) -> bool:
        """Let a call through, claiming the half-open trial if that is where we are."""
        if not self.would_admit():
            return False
        if self.state == "half-open":
            self._trial = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> None:
        self._failures += 1
        if self._trial or self._failures >= self._threshold:
            self._opened_at = self._clock()
        self._trial = False

    def release(self) -> None:
        """An admitted call ended without telling us anything (cancelled): free the trial."""
        self._trial = False


@dataclass
class ServerGuard:
    """The limits one server's calls pass through."""

    slots: asyncio.Semaphore
    max_concurrency: int
    rate: RateLimiter
    per_minute: int | None
    breaker: CircuitBreaker

    @classmethod
    def for_server(cls, name: str, config: GatewayConfig) -> ServerGuard:
        limits = config.servers.get(name, GatewayServerLimits())
        return cls(
            slots=asyncio.Semaphore(limits.max_concurrency),
            max_concurrency=limits.max_concurrency,
            rate=RateLimiter(limits.calls_per_minute),
            per_minute=limits.calls_per_minute,
            breaker=CircuitBreaker(config.breaker_failures, config.breaker_cooldown),
        )
