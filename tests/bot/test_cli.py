import os
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


@pytest.mark.parametrize("command", [["migrate"], ["backup", "copy.db"]])
def test_a_database_that_cannot_be_opened_is_one_line(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "afile").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'afile' / 'coworker.db'}"
    result = run_bot(*command, cwd=tmp_path, env={"DATABASE_URL": url})
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"error: cannot open the database {tmp_path / 'afile' / 'coworker.db'}: "
        f"{tmp_path / 'afile'} is a file, not a folder"
    ]
