"""An end-to-end harness: the real app wired to the Slack and Anthropic stand-ins.

`Harness.start()` writes config files, builds the app with `bot.app.build()` exactly as
`python -m bot` does (only the URLs point at 127.0.0.1), starts the runner and connects over
Socket Mode (or not, for HTTP-mode tests). Helpers send events and wait on observable
effects with bounded waits.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app import Coworker, build
from bot.base.settings import Settings
from bot.tasks import Task
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack, app_mention, block_action, channel_message, dm_message

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
SIGNING_SECRET = "test-signing-secret"
FAST_CONFIG = """
[runner]
status_interval = "0.05s"
"""
# The Anthropic stand-in answers requests in the order they arrive, and a real embedding
# model's latency at task start reorders concurrent tasks' requests. Tests about memory pick
# their provider in their own [memory] section; the rest keep memory keyword-only.
KEYWORD_MEMORY = """
[memory]
embeddings = "none"
"""


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `check` (sync or async) until it returns something truthy; bounded."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = check()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


@dataclass
class Harness:
    tmp: Path
    config: str = ""
    mcp: dict[str, Any] | None = None
    socket_mode: bool = True
    #: More settings (e.g. `port=0`, `coworker_secret_key=…` for per-user servers).
    env: dict[str, Any] = field(default_factory=dict)
    #: The database (default: a SQLite file in `tmp`), e.g. a PostgreSQL test database.
    database_url: str | None = None
    slack: FakeSlack = field(init=False)
    anthropic: FakeAnthropic = field(init=False)
    app: Coworker | None = None

    async def __aenter__(self) -> Harness:
        self.slack = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN)
        await self.slack.start()
        self.anthropic = FakeAnthropic()
        await self.anthropic.start()
        fast = "" if "[runner]" in self.config else FAST_CONFIG
        keywords = "" if "[memory]" in self.config else KEYWORD_MEMORY
        (self.tmp / "coworker.toml").write_text(self.config + fast + keywords)
        (self.tmp / ".mcp.json").write_text(json.dumps(self.mcp or {"mcpServers": {}}))
        await self.start_app()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_app()
        await self.anthropic.close()
        await self.slack.stop()

    def settings(self) -> Settings:
        return Settings(
            slack_bot_token=BOT_TOKEN,
            slack_app_token=APP_TOKEN if self.socket_mode else None,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=self.slack.api_url,
            anthropic_api_key="sk-ant-test-key",
            anthropic_base_url=self.anthropic.base_url,
            database_url=self.database_url or f"sqlite:///{self.tmp / 'coworker.db'}",
            coworker_config=self.tmp / "coworker.toml",
            coworker_mcp_config=self.tmp / ".mcp.json",
            **self.env,
        )  # type: ignore[call-arg]

    async def start_app(self) -> Coworker:
        """Build and start a fresh app process on the same database."""
        connected = self.slack.connection_count
        self.app = await build(self.settings())
        await self.app.start()
        if self.socket_mode:
            await self.app.connect()
            await self.slack.wait_connected(after=connected)
        return self.app

    async def stop_app(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    # -- driving ---------------------------------------------------------------------

    async def mention(
        self, text: str, user: str = "U1", channel: str = "C1", **kw: Any
    ) -> dict[str, Any]:
        event = app_mention(text, user=user, channel=channel, **kw)
        await self.slack.send_event(event)
        return event

    async def delegate(
        self, text: str, user: str = "U1", channel: str = "C1", timeout: float = 5.0
    ) -> int:
        """Mention the bot and wait until the message is a task; its id.

        Back-to-back mentions may be taken in out of order (Slack promises no order either),
        so tests that count on task ids send the next one only after this returns.
        """
        event = await self.mention(text, user=user, channel=channel)
        task_id = await until(
            lambda: self.coworker.db.fetchval(
                "SELECT id FROM tasks WHERE channel = ? AND message_ts = ?", (channel, event["ts"])
            ),
            timeout,
            what=f"a task for {text!r}",
        )
        return int(task_id)

    async def reply(self, text: str, thread_ts: str, user: str = "U1", channel: str = "C1") -> None:
        """Reply in a task's thread and wait until the bot has taken the reply in."""
        event = channel_message(text, user=user, channel=channel, thread_ts=thread_ts)
        await self.slack.wait_for_ack(await self.slack.send_event(event))
        await until(
            lambda: self.coworker.db.fetchval(
                "SELECT 1 FROM task_inputs WHERE ts = ?", (event["ts"],)
            ),
            what=f"the reply {text!r}",
        )

    async def approve_plan(self, task_id: int = 1, user: str = "U1") -> str:
        """Click Approve on the task's plan message once it is posted, as a person would."""
        plan_ts = await until(
            lambda: self.coworker.db.fetchval("SELECT plan_ts FROM tasks WHERE id = ?", (task_id,)),
            what=f"the plan of T-{task_id} in the thread",
        )
        channel = (await self.task(task_id)).channel
        return await self.click(
            "plan_approve", task_id, user=user, channel=channel, message_ts=plan_ts
        )

    async def dm(
        self, text: str, user: str = "U1", channel: str = "D1", **kw: Any
    ) -> dict[str, Any]:
        event = dm_message(text, user=user, channel=channel, **kw)
        await self.slack.send_event(event)
        return event

    async def click(
        self, action_id: str, value: str | int, user: str = "U1", channel: str = "C1", **kw: Any
    ) -> str:
        return await self.slack.send_interactive(
            block_action(action_id, str(value), user=user, channel=channel, **kw)
        )

    # -- observing -------------------------------------------------------------------

    @property
    def coworker(self) -> Coworker:
        assert self.app is not None
        return self.app

    async def task(self, task_id: int = 1) -> Task:
        return await self.coworker.tasks.get(task_id)

    async def wait_status(
        self, status: str | tuple[str, ...], task_id: int = 1, timeout: float = 5.0
    ) -> Task:
        """Wait until the task reaches one of `status` (bounded)."""
        wanted = (status,) if isinstance(status, str) else status

        async def reached() -> bool:
            now = await self.coworker.db.fetchval(
                "SELECT status FROM tasks WHERE id = ?", (task_id,)
            )
            return now in wanted

        await until(reached, timeout, what=f"T-{task_id} {' or '.join(wanted)}")
        return await self.task(task_id)

    def posted(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages if channel is None or m.get("channel") == channel]

    def texts(self) -> str:
        """Everything the bot posted, text and blocks, as one string (for secret scans)."""
        return json.dumps([c.params for c in self.slack.calls])
