"""The real bot as a child process (`python -m bot`), started and SIGKILLed by a test.

The stand-ins (tests/fakes) run in the test's event loop; the child reaches them through
`SLACK_API_URL` and `ANTHROPIC_BASE_URL` exactly as it would reach Slack and Anthropic.
Its stdout and stderr go to one log file, appended across restarts, so a test can scan
everything the bot ever logged. The stdio MCP servers the bot starts run in their own
sessions (the MCP SDK starts them so), so a SIGKILL of the bot orphans them; `kill()`
notes the bot's children first and waits for them to go away, as they do on stdin EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHILD_EXIT_WAIT = 10.0


def child_pids(pid: int) -> set[int]:
    """The direct children of `pid`, from /proc (Linux)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                found |= {int(p) for p in f.read().split()}
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class BotProcess:
    """`python -m bot` with a given environment, in a given working directory."""

    env: dict[str, str]
    cwd: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    starts: int = 0
    _children: set[int] = field(default_factory=set)

    async def start(self) -> None:
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=self.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.started_at = time.monotonic()
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL the bot, then wait (bounded) for the MCP servers it started to exit."""
        if self.proc is None:
            return
        children = child_pids(self.proc.pid)
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)
        self.proc = None
        await self._reap(children)

    async def _reap(self, pids: set[int]) -> None:
        deadline = time.monotonic() + CHILD_EXIT_WAIT
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            await asyncio.sleep(0.05)
        for pid in pids:
            if alive(pid):  # a child we started that ignored EOF on stdin
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def bot_env(slack: Any, anthropic: Any, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment `python -m bot` needs to run against the stand-ins in `tmp`."""
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_API_URL": slack.api_url,
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "ANTHROPIC_BASE_URL": anthropic.base_url,
        "DATABASE_URL": f"sqlite:///{tmp / 'coworker.db'}",
        "COWORKER_CONFIG": str(tmp / "coworker.toml"),
        "COWORKER_MCP_CONFIG": str(tmp / ".mcp.json"),
        **extra,
    }


EFFECTS_SERVER = Path(__file__).parent / "servers" / "effects.py"


class ChildBotRun:
    """What the crash and load runs share: stand-ins, the bot child, a read-only view.

    Subclasses set `self.slack` and `self.anthropic` (not started) before `launch()`.
    """

    tmp: Path
    slack: Any
    anthropic: Any
    bot: BotProcess | None = None
    _db: Any = None

    @property
    def effects_log(self) -> Path:
        return self.tmp / "effects.log"

    async def launch(self, config: str, tool_delay: tuple[float, float] | None) -> None:
        """Start the stand-ins, write the config files, and prepare the bot (not started)."""
        await self.slack.start()
        await self.anthropic.start()
        (self.tmp / "coworker.toml").write_text(config)
        delay = {"EFFECTS_DELAY": f"{tool_delay[0]},{tool_delay[1]}"} if tool_delay else {}
        (self.tmp / ".mcp.json").write_text(
            json.dumps(
                {
                    "mcpServers": {
                        "effects": {
                            "command": sys.executable,
                            "args": [str(EFFECTS_SERVER)],
                            "env": {"EFFECTS_LOG": str(self.effects_log), **delay},
                        }
                    }
                }
            )
        )
        env = bot_env(self.slack, self.anthropic, self.tmp)
        self.bot = BotProcess(env=env, cwd=self.tmp, log=self.tmp / "bot.log")

    async def __aexit__(self, *exc: object) -> None:
        if self.bot is not None:
            await self.bot.kill()
        if self._db is not None:
            self._db.close()
        await self.anthropic.close()
        await self.slack.stop()

    def db(self) -> Any:
        """A read-only connection to the bot's database, from outside the bot."""
        if self._db is None:
            from bot.base.db.sqlite import sqlite_module

            path = self.tmp / "coworker.db"
            self._db = sqlite_module().connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        return self._db

    def val(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.db().execute(sql, params).fetchone()
        return None if row is None else row[0]
