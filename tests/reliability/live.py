"""One app for many hypothesis examples: the harness in its own event loop thread.

Hypothesis runs a synchronous test function many times; the app, the Slack and Anthropic
stand-ins and the MCP server stay up in a background loop and each example submits
coroutines to it (`LiveApp.run`). `settle()` is the barrier between examples: Bolt runs a
listener as a background task after acking (`process_before_response=False`), so the
example waits for every such task (Bolt's `run_ack_function_asynchronously`, slack_sdk's
`run_message_listeners`) to finish before it checks the state.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tests.scenarios.harness import Harness

T = TypeVar("T")
_LISTENERS = ("run_ack_function_asynchronously", "run_message_listeners")


async def settle(timeout: float = 10.0) -> None:
    """Wait until no Slack listener of this loop is still running."""
    me = asyncio.current_task()
    async with asyncio.timeout(timeout):
        while True:
            running = [
                t
                for t in asyncio.all_tasks()
                if t is not me
                and not t.done()
                and getattr(t.get_coro(), "__qualname__", "").endswith(_LISTENERS)
            ]
            if not running:
                return
            await asyncio.wait(running, timeout=timeout)


class LiveApp:
    """A started `Harness` in a background loop, driven from synchronous code."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-app", daemon=True)

    def __enter__(self) -> LiveApp:
        self._thread.start()
        self.run(self.h.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.h.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
