"""Work started by Slack events that must finish (or be waited for) before shutdown."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

log = logging.getLogger(__name__)


class InFlight:
    """`async with inflight:` around a unit of work; `drain()` waits for all of them."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __aenter__(self) -> InFlight:
        self._count += 1
        self._idle.clear()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until no work is in flight; False if some was still running at the timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("shutdown: %d event handler(s) still running", self._count)
            return False
        return True
