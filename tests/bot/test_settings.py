"""Environment settings: what counts as set, and the one-line errors about them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.base.errors import SettingsError
from bot.base.settings import load_settings
from tests.bot.test_cli import run_bot


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "ANTHROPIC_API_KEY", "PORT"):
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.slack_app_token is None and not settings.socket_mode
    assert settings.slack_bot_token is None and settings.anthropic_api_key is None
    assert settings.port == 3000
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN is not set"):
        settings.require_slack()


def test_an_empty_line_in_dotenv_is_unset(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-1\nSLACK_APP_TOKEN=\nANTHROPIC_API_KEY=\n")
    settings = load_settings()
    assert settings.slack_bot_token is not None
    assert settings.slack_app_token is None and settings.anthropic_api_key is None


def test_an_empty_app_token_means_http_mode_and_a_clear_error(tmp_path: Path) -> None:
    result = run_bot(cwd=tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": ""})
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "SLACK_SIGNING_SECRET is not set" in result.stderr
    )


def test_the_readme_shows_an_absolute_database_url_with_four_slashes() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| `DATABASE_URL`")]
    absolute = re.search(r"`(sqlite:////[^`]+)`", row)
    assert absolute is not None, row
    assert load_settings(database_url=absolute.group(1)).database_path.startswith("/")
    relative = load_settings(database_url="sqlite:///state/coworker.db").database_path
    assert relative == "state/coworker.db"
