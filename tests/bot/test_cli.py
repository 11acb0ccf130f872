import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_bot(
    *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ANTHROPIC_", "COWORKER_", "DATABASE_"))
    }
    clean["PYTHONPATH"] = str(REPO)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean,
        timeout=60,
    )


def test_no_environment_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_bot(cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "SLACK_BOT_TOKEN" in lines[0] and "README" in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_config_key_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "coworker.toml").write_text('[approvals]\ntimout = "4h"\n')
    result = run_bot(cwd=tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})
    assert result.returncode == 2
    assert "approvals.timout" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_command(tmp_path: Path) -> None:
    result = run_bot(
        "migrate", cwd=tmp_path, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    )
    assert result.returncode == 0, result.stderr
    assert "0001_tasks" in result.stdout
    again = run_bot("migrate", cwd=tmp_path, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert "up to date" in again.stdout


def test_help(tmp_path: Path) -> None:
    result = run_bot("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("doctor", "migrate", "report", "backup"):
        assert command in result.stdout


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'afile' / 'coworker.db'}"
    result = run_bot("migrate", cwd=tmp_path, env={"DATABASE_URL": url})
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"error: cannot open the database {tmp_path / 'afile' / 'coworker.db'}: "
        f"{tmp_path / 'afile'} is a file, not a folder"
    ]


def test_a_config_file_named_but_missing_exits_2_naming_it(tmp_path: Path) -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_APP_TOKEN": "xapp-1",
        "COWORKER_CONFIG": str(tmp_path / "cowroker.toml"),
    }
    result = run_bot(cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'cowroker.toml'}: no such file (COWORKER_CONFIG names it; "
        "unset it for the defaults)"
    ]


def migrated(tmp_path: Path) -> dict[str, str]:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}"}
    assert run_bot("migrate", cwd=tmp_path, env=env).returncode == 0
    return env


def test_backup_into_a_folder_writes_a_timestamped_file(tmp_path: Path) -> None:
    env = migrated(tmp_path)
    (tmp_path / "backups").mkdir()
    result = run_bot("backup", str(tmp_path / "backups"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    (written,) = (tmp_path / "backups").iterdir()
    assert re.fullmatch(r"coworker-\d{8}-\d{6}\.db", written.name)
    assert result.stdout.strip() == f"backup written to {written}"
    assert not list(tmp_path.glob("*.partial"))
    with sqlite3.connect(written) as copy:
        assert copy.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] > 0


def test_backup_refuses_the_live_database_and_an_empty_path(tmp_path: Path) -> None:
    env = migrated(tmp_path)
    live = tmp_path / "live.db"
    before = live.read_bytes()
    result = run_bot("backup", str(live), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: backup to {live} refused: that is the live database; name another file"
    ]
    assert live.read_bytes() == before
    empty = run_bot("backup", "", cwd=tmp_path, env=env)
    assert empty.returncode == 2 and "path: must not be empty" in empty.stderr
    assert "Traceback" not in empty.stderr


def test_backup_of_no_database_creates_none(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'live.db'}"}
    result = run_bot("backup", str(tmp_path / "copy.db"), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: no database at {tmp_path / 'state' / 'live.db'}: nothing to back up"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_backup_on_postgresql_says_to_use_pg_dump_in_one_line(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://coworker:secret@127.0.0.1:1/coworker"}
    result = run_bot("backup", str(tmp_path / "copy.db"), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: backup copies SQLite files; back up PostgreSQL with pg_dump, e.g. pg_dump"
        ' --format=custom --file coworker.dump "$DATABASE_URL" (restore with pg_restore),'
        " or your provider's snapshots"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["report", "--days", "0"], "python -m bot report: argument --days: must be at least 1"),
        (["report", "--task", "X-1"], "argument --task: 'X-1' is not a task reference (like T-42)"),
        (["memory", "frob"], "python -m bot memory: argument action: invalid choice: 'frob'"),
        (["backup"], "the following arguments are required: path"),
        (["nope"], "python -m bot: argument command: invalid choice: 'nope'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    result = run_bot(*args, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and says in line and line.endswith("--help)")


def test_every_argument_has_help() -> None:
    from bot.__main__ import parser

    def arguments(p: argparse.ArgumentParser, prog: str) -> list[tuple[str, str | None]]:
        found = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += arguments(child, f"{prog} {name}")
            elif not isinstance(action, argparse._HelpAction):
                found.append(
                    (f"{prog} {'/'.join(action.option_strings) or action.dest}", action.help)
                )
        return found

    found = arguments(parser(), "python -m bot")
    assert found and [name for name, text in found if not text] == []


def test_memory_decay_needs_neither_slack_nor_mcp_servers(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    server = {"command": sys.executable, "args": ["-c", f"open({str(marker)!r}, 'w')"]}
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"probe": server}}))
    result = run_bot("memory", "decay", cwd=tmp_path, env=migrated(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 memory(ies) archived"
    assert not marker.exists()
