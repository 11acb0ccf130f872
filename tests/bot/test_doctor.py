"""`python -m bot doctor` looks at every part, says plainly what is wrong, and changes nothing."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from bot.base.db import Database
from bot.base.db.postgres import PostgresDatabase, describe
from bot.base.db.sqlite import sqlite_module
from bot.base.migrations import discover
from bot.cluster.leader import LeaderLease
from bot.cluster.replicas import ReplicaRegistry
from bot.doctor import doctor
from tests.bot.test_cli import run_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack
from tests.postgres_server import PG_MIGRATIONS
from tests.scenarios.conftest import TICKETS

LINE = re.compile(r"^(✓|!|✗|-) \S|^    \S|^(all checks passed|\d+ problem|nothing to fix)")


@pytest.fixture
async def stand_ins(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[FakeSlack, FakeAnthropic]]:
    """The stand-ins, and an environment pointing at them (Socket Mode)."""
    async with (
        FakeSlack(bot_token="xoxb-doctor", app_token="xapp-doctor") as slack,
        FakeAnthropic() as anthropic,
    ):
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-doctor")
        monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-doctor")
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-doctor")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.base_url)
        yield slack, anthropic


async def run_doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = await doctor()
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if not LINE.match(line)] == []  # one symbol per state
    return code, lines


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_doctor_reports_every_part(
    tmp_path: Path, stand_ins: object, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "coworker.toml").write_text('[policy.tools]\n"tickets__search" = "auto"\n')
    (tmp_path / ".mcp.json").write_text(
        json.dumps(
            {
                "mcpServers": {
                    "tickets": {"command": sys.executable, "args": [str(TICKETS)]},
                    "broken": {
                        "command": sys.executable,
                        "args": ["-c", "import sys; sys.exit('no config')"],
                    },
                }
            }
        )
    )
    code, lines = await run_doctor(capsys)
    out = "\n".join(lines)
    assert code == 1
    assert "✓ SLACK_BOT_TOKEN: set" in lines and "✓ SLACK_APP_TOKEN: set (Socket Mode)" in lines
    assert "✓ SLACK_SIGNING_SECRET: not needed in Socket Mode" in lines
    assert any(line.startswith("✓ Slack: signed in as") for line in lines)
    assert "✓ Slack: SLACK_APP_TOKEN accepted for Socket Mode" in lines
    assert any(line.startswith("✓ Anthropic: reachable") for line in lines)
    assert any(line.startswith("✗ MCP broken (stdio, shared): down") for line in lines)
    assert "✓ MCP tickets (stdio, shared): up, 4 tools" in lines and 'rule "tickets__search"' in out
    assert "✓ MCP slack (built in): up, 5 tools" in lines
    assert "✓ MCP memory (built in): up, 2 tools" in lines
    # A fresh install has vector memory: the built-in model is no warning.
    assert "✓ memory: embeddings by local (multilingual-e5-small-q4)" in lines
    assert lines[-1] == "1 problem(s) to fix, 1 warning(s)"
    assert "xoxb-doctor" not in out and "sk-ant-doctor" not in out


async def test_doctor_names_a_rejected_token(
    stand_ins: tuple[FakeSlack, FakeAnthropic],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-other")
    code, lines = await run_doctor(capsys)
    assert code == 1 and "✗ Slack: rejected SLACK_BOT_TOKEN (invalid_auth)" in lines


async def test_slack_unreachable_is_one_line_and_the_later_checks_still_run(
    stand_ins: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/"
    monkeypatch.setenv("SLACK_API_URL", url)
    code, lines = await run_doctor(capsys)
    assert code == 1
    assert [line for line in lines if "Slack:" in line] == [
        f"✗ Slack: cannot reach {url} (connection refused)"
    ]
    later = lines.index(f"✗ Slack: cannot reach {url} (connection refused)")
    assert any(line.startswith("✓ Anthropic: reachable") for line in lines[later:])
    assert "✓ MCP slack (built in): up, 5 tools" in lines[later:]


def test_no_environment_reports_every_variable_without_a_traceback(tmp_path: Path) -> None:
    result = run_bot("doctor", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "✗ SLACK_BOT_TOKEN: not set (see README.md, section 'Set up the Slack app')" in lines
    assert "✗ ANTHROPIC_API_KEY: not set (see README.md, section 'Configuration')" in lines
    assert "- Slack: not checked until SLACK_BOT_TOKEN is set" in lines
    assert lines[-1] == "3 problem(s) to fix, 1 warning(s)"
    assert list(tmp_path.iterdir()) == []  # it only looked


def test_bad_variables_are_each_one_line_and_the_others_are_still_reported(
    tmp_path: Path,
) -> None:
    env = {"PORT": "70000", "DATABASE_URL": "postgres:/x", "SLACK_BOT_TOKEN": "xoxb-1"}
    result = run_bot("doctor", cwd=tmp_path, env=env)
    lines = result.stdout.splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "✓ SLACK_BOT_TOKEN: set" in lines
    assert "✗ PORT: must be at most 65535 (see README.md, section 'Configuration')" in lines
    assert (
        "✗ DATABASE_URL: must look like sqlite:///relative/path.db, "
        "sqlite:////absolute/path.db or postgresql://user:password@host/db"
        " (see README.md, section 'Configuration')"
    ) in lines
    assert "- database: not checked until DATABASE_URL is fixed" in lines


async def test_a_config_error_is_said_once(
    tmp_path: Path, stand_ins: object, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "coworker.toml").write_text('[approvals]\ntimout = "4h"\n')
    code, lines = await run_doctor(capsys)
    assert code == 1
    assert [line for line in lines if "timout" in line] == [
        "✗ coworker.toml: approvals.timout: unknown key (did you mean 'timeout'?)"
    ]
    assert "- MCP servers: not checked until the files above are fixed" in lines
    assert "- memory: not checked until coworker.toml is fixed" in lines


async def test_doctor_creates_nothing_and_migrates_nothing(
    tmp_path: Path,
    stand_ins: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "state" / "deep" / "coworker.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    _, lines = await run_doctor(capsys)
    assert f"! database {missing}: does not exist yet; the bot creates it at start" in lines
    assert not (tmp_path / "state").exists()

    blank = tmp_path / "blank.db"
    sqlite_module().connect(blank).close()  # an empty SQLite file: nothing migrated
    before = hashlib.sha256(blank.read_bytes()).hexdigest()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{blank}")
    _, lines = await run_doctor(capsys)
    pending = f"! database {blank}: {len(discover())} migration(s) pending"
    assert any(line.startswith(pending) for line in lines), lines
    assert hashlib.sha256(blank.read_bytes()).hexdigest() == before
    assert not (tmp_path / "blank.db-wal").exists() and not (tmp_path / "blank.db-shm").exists()


async def test_a_migrated_database_is_reported_as_such(
    tmp_path: Path,
    stand_ins: object,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db.path}")
    _, lines = await run_doctor(capsys)
    assert any(line.startswith(f"✓ database {db.path}: migrated; sqlite-vec v") for line in lines)


@pytest.mark.parametrize("case", ["parent is a file", "a folder", "not a database"])
async def test_a_database_that_cannot_be_opened_is_one_line(
    tmp_path: Path,
    stand_ins: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    (tmp_path / "afolder").mkdir()
    (tmp_path / "garbage.db").write_text("hello " * 1000)
    path, expected = {
        "parent is a file": (
            afile / "coworker.db",
            f"✗ database {afile / 'coworker.db'}: cannot be created: {afile} is a file, not a folder",
        ),
        "a folder": (
            tmp_path / "afolder",
            f"✗ cannot open the database {tmp_path / 'afolder'}: that is a folder",
        ),
        "not a database": (
            tmp_path / "garbage.db",
            f"✗ cannot open the database {tmp_path / 'garbage.db'}: file is not a database",
        ),
    }[case]
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    code, lines = await run_doctor(capsys)
    assert code == 1
    about = [line for line in lines if line[2:].startswith(("database", "cannot open the data"))]
    assert about == [expected]
    assert any(line.startswith("✓ Anthropic: reachable") for line in lines)


async def test_postgresql_server_pgvector_migrations_replicas_and_leader_one_line_each(
    stand_ins: object,
    pg_db: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await ReplicaRegistry(pg_db, "host-a:11:x", lease=30).join()
    await ReplicaRegistry(pg_db, "host-b:12:y", lease=30).join()
    await LeaderLease(pg_db, "host-b:12:y", lease=30).try_acquire()
    before = await pg_db.fetchval("SELECT COUNT(*) FROM schema_migrations")
    monkeypatch.setenv("DATABASE_URL", pg_db.url)
    _, lines = await run_doctor(capsys)
    where = f"database {describe(pg_db.url)}"
    database = [
        line for line in lines if where in line or line[2:].startswith(("replicas", "leader"))
    ]
    assert database[0].startswith(f"✓ {where}: server 18")
    assert database[1].startswith(f"✓ {where}: pgvector 0.")
    assert database[1].endswith(" installed")
    assert database[2] == f"✓ {where}: migrated"
    assert re.fullmatch(
        r"✓ replicas: 2 live: host-a:11:x \(\d+ s ago\), host-b:12:y \(\d+ s ago\)", database[3]
    )
    assert re.fullmatch(r"✓ leader: host-b:12:y \((29|30) s of lease left\)", database[4])
    assert len(database) == 5
    assert await pg_db.fetchval("SELECT COUNT(*) FROM schema_migrations") == before


async def test_a_blank_postgresql_database_is_looked_at_not_changed(
    stand_ins: object,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    _, lines = await run_doctor(capsys)
    where = f"database {describe(postgres_url)}"
    pending = len(discover(PG_MIGRATIONS))
    assert (
        f"! {where}: {pending} migration(s) pending; the bot applies them at start (or run `python -m bot migrate`)"
        in lines
    )
    assert any(
        line.startswith(f"! {where}: pgvector available, not yet installed") for line in lines
    )
    assert "✓ replicas: none running (none has sent a heartbeat within its lease)" in lines
    assert "✓ leader: none (no replica running)" in lines
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute(
            "SELECT to_regclass('schema_migrations'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
        )
        assert await cur.fetchone() == (None, None)


async def test_an_unreachable_postgresql_is_one_line_and_the_other_checks_run(
    stand_ins: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://coworker:hunter2@127.0.0.1:{port}/cw")
    code, lines = await run_doctor(capsys)
    assert code == 1
    database = [line for line in lines if "PostgreSQL" in line]
    assert len(database) == 1
    assert database[0].startswith(f"✗ cannot reach PostgreSQL at 127.0.0.1:{port}/cw after 3 s: ")
    assert not any("hunter2" in line for line in lines)
    assert any(line.startswith("✓ Slack") for line in lines)
