"""`python -m bot doctor` says plainly what works and what does not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bot.base.settings import Settings
from bot.cli import doctor
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack
from tests.scenarios.conftest import TICKETS


def settings_for(tmp_path: Path, slack: FakeSlack, anthropic: FakeAnthropic) -> Settings:
    return Settings(
        slack_bot_token="xoxb-doctor",
        slack_app_token="xapp-doctor",
        slack_api_url=slack.api_url,
        anthropic_api_key="sk-ant-doctor",
        anthropic_base_url=anthropic.base_url,
        database_url=f"sqlite:///{tmp_path / 'd.db'}",
        coworker_config=tmp_path / "coworker.toml",
        coworker_mcp_config=tmp_path / ".mcp.json",
    )  # type: ignore[call-arg]


async def test_doctor_reports_every_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
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
    async with (
        FakeSlack(bot_token="xoxb-doctor", app_token="xapp-doctor") as slack,
        FakeAnthropic() as anthropic,
    ):
        code = await doctor(settings_for(tmp_path, slack, anthropic))
    out = capsys.readouterr().out
    assert code == 1
    assert "✓ Slack: authenticated" in out and "✓ Anthropic: reachable" in out
    assert "migration(s) pending" in out or "migrated" in out
    assert "tickets__search" in out and 'rule "tickets__search"' in out
    assert "✗ mcp" in out and "broken" in out
    assert "xoxb-doctor" not in out and "sk-ant-doctor" not in out


async def test_doctor_names_a_rejected_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        FakeSlack(bot_token="xoxb-other", app_token="xapp-doctor") as slack,
        FakeAnthropic() as anthropic,
    ):
        code = await doctor(settings_for(tmp_path, slack, anthropic))
    out = capsys.readouterr().out
    assert code == 1 and "✗ slack: Slack auth.test failed: invalid_auth" in out
