"""Several `python -m bot` replicas on one PostgreSQL, against the stand-ins.

Each replica is a real child process with its own Socket Mode connection (its own app
token, as an app may have several), and the Slack stand-in hands each envelope to a random
open connection, as Slack does; `via=` sends one to a chosen replica. The replicas share a
blank database they migrate themselves on start (under the advisory lock), the effects MCP
server (one per replica, logging every real call to one file), and the Anthropic stand-in.
Used by the multi-replica test and by `benchmarks/replicas.py`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack
from tests.postgres_server import EmbeddedPostgres
from tests.reliability.bot_process import EFFECTS_SERVER, BotProcess, bot_env


class ReplicaRun:
    """N replicas, the stand-ins and a read connection to the shared database."""

    def __init__(
        self,
        tmp: Path,
        server: EmbeddedPostgres,
        replicas: int,
        *,
        config: str,
        seed: int = 0,
        tool_delay: tuple[float, float] | None = None,
        model_latency: tuple[float, float] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.tmp, self.server, self.n = tmp, server, replicas
        self.config, self.tool_delay, self.extra_env = config, tool_delay, extra_env or {}
        self.tokens = [f"xapp-replica-{i}" for i in range(replicas)]
        self.slack = FakeSlack(
            bot_token="xoxb-replicas",
            app_token=self.tokens[0],
            app_tokens=tuple(self.tokens[1:]),
            dispatch="random",
            seed=seed,
        )
        self.anthropic = FakeAnthropic()
        self.anthropic.latency = model_latency
        self.dbname = server.create_database()
        self.url = server.url(self.dbname)
        self.bots: list[BotProcess] = []
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    @property
    def effects_log(self) -> Path:
        return self.tmp / "effects.log"

    async def __aenter__(self) -> ReplicaRun:
        await self.slack.start()
        await self.anthropic.start()
        (self.tmp / "coworker.toml").write_text(self.config)
        delay = (
            {"EFFECTS_DELAY": f"{self.tool_delay[0]},{self.tool_delay[1]}"}
            if self.tool_delay
            else {}
        )
        effects = {
            "command": sys.executable,
            "args": [str(EFFECTS_SERVER)],
            "env": {"EFFECTS_LOG": str(self.effects_log), **delay},
        }
        (self.tmp / ".mcp.json").write_text(json.dumps({"mcpServers": {"effects": effects}}))
        for i, token in enumerate(self.tokens):
            env = bot_env(self.slack, self.anthropic, self.tmp)
            env.update(DATABASE_URL=self.url, SLACK_APP_TOKEN=token, **self.extra_env)
            self.bots.append(BotProcess(env=env, cwd=self.tmp, log=self.tmp / f"replica-{i}.log"))
        for bot in self.bots:
            await bot.start()
        return self

    async def wait_connected(self, timeout: float = 90.0) -> None:
        """Until every running replica has its Socket Mode connection open."""
        want = {t for t, bot in zip(self.tokens, self.bots, strict=True) if bot.running}
        try:
            async with asyncio.timeout(timeout):
                while not want <= set(self.slack.open_connections()):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(
                f"connected: {self.slack.open_connections()}; logs:\n{self.logs()[-4000:]}"
            ) from None

    async def __aexit__(self, *exc: object) -> None:
        for bot in self.bots:
            await bot.kill()
        if self._conn is not None:
            self._conn.close()
        await self.anthropic.close()
        await self.slack.stop()
        self.server.drop_database(self.dbname)

    def logs(self) -> str:
        return "\n".join(f"--- replica {i}\n{b.log_text()}" for i, b in enumerate(self.bots))

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of the shared database, read from outside the replicas."""
        if self._conn is None:
            self._conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        return list(self._conn.execute(sql.encode() if not params else sql, params).fetchall())

    def val(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def replica_running(self, task_id: int) -> int | None:
        """Which replica holds the task's lease (its index), from the pid in the owner id."""
        owner = self.val("SELECT lease_owner FROM tasks WHERE id = %s", (task_id,))
        if owner is None:
            return None
        pid = int(owner.split(":")[1])
        return next(
            (i for i, b in enumerate(self.bots) if b.proc is not None and b.proc.pid == pid),
            None,
        )
