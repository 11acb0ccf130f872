"""`python -m bot memory consolidate` against a model that cannot be reached says so."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from bot.base.config import MemoryConfig
from bot.base.db import Database
from bot.base.migrations import migrate
from memory.store import MemoryStore
from tests.bot.test_cli import REPO
from tests.fakes.slack import FakeSlack


async def an_episode_to_consolidate(path: Path) -> None:
    db = await Database.open(path)
    try:
        await migrate(db)
        store = MemoryStore(db, None, MemoryConfig())
        await store.add("episode", "Deploys on Fridays need a second reviewer.", "team")
    finally:
        await db.close()


async def test_consolidate_with_the_model_unreachable_exits_1_saying_why(tmp_path: Path) -> None:
    await an_episode_to_consolidate(tmp_path / "coworker.db")
    (tmp_path / "coworker.toml").write_text("[runner]\nmodel_retries = 0\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    async with FakeSlack(bot_token="xoxb-m", app_token="xapp-m") as slack:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_"))},
            "PYTHONPATH": str(REPO),
            "SLACK_BOT_TOKEN": "xoxb-m",
            "SLACK_APP_TOKEN": "xapp-m",
            "SLACK_API_URL": slack.api_url,
            "ANTHROPIC_API_KEY": "sk-ant-m",
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{closed}",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'coworker.db'}",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "memory",
            "consolidate",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        posted = slack.calls_to("chat.postMessage")
    lines = err.decode().splitlines()
    assert proc.returncode == 1, err.decode()
    assert out.decode() == "" and posted == []
    assert lines[-1].startswith("error: memory consolidate: ")
    assert lines[-1].endswith(
        "from the model API; no facts were proposed, and the episodes wait for the next run"
    )
    assert "Traceback" not in err.decode()
