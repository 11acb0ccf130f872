"""`doctor` and per-user MCP servers: their mode, how many people connected, and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.base import clock
from bot.base.db import open_database
from bot.base.migrations import migrate
from tests.bot.test_doctor import run_doctor, stand_ins  # noqa: F401  (a fixture)
from tests.tools.servers.protected import serve_protected

KEY = "doctor-test-secret-key-0123456789abcdef"


async def test_doctor_shows_per_user_servers_their_people_and_a_missing_key(
    tmp_path: Path,
    stand_ins: object,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serve_protected() as docs:
        mcp = {"mcpServers": {"docs": {"type": "http", "url": docs.url}}}
        (tmp_path / ".mcp.json").write_text(json.dumps(mcp))
        code, lines = await run_doctor(capsys)
        assert code == 1
        assert (
            "✓ MCP docs (http): per-user, who connected is not known (no database yet); its "
            "tools are listed with the first connected person's token"
        ) in lines
        assert any(
            line.startswith("✗ COWORKER_SECRET_KEY: not set; the per-user server(s) docs need it")
            for line in lines
        )

        db = await open_database(f"sqlite:///{tmp_path / 'coworker.db'}")
        await migrate(db)
        for user in ("U1", "U2"):
            await db.execute(
                "INSERT INTO oauth_tokens (user_id, server, sealed, connected_at)"
                " VALUES (?, 'docs', 'sealed', ?)",
                (user, clock.now()),
            )
        await db.close()
        monkeypatch.setenv("COWORKER_SECRET_KEY", KEY)
        code, lines = await run_doctor(capsys)
        assert not any("COWORKER_SECRET_KEY" in line for line in lines)
        assert any(
            line.startswith("✓ MCP docs (http): per-user, 2 people connected") for line in lines
        )
        assert docs.authority.seen.registrations == 0  # it only looked
