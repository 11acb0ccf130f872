"""handlers/slack_app.py: the Bolt app as `build()` makes it."""

from __future__ import annotations

import logging

import pytest
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

from handlers.slack_app import make_app, make_client


async def test_the_bot_token_in_the_environment_brings_no_start_up_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Production always has SLACK_BOT_TOKEN set; Bolt reads it besides the client we pass.
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-the-environment")
    client = make_client("xoxb-from-the-environment", "http://127.0.0.1:9/api/")
    with caplog.at_level(logging.INFO, logger="slack_bolt"):
        app = make_app(client, None)
        make_app(client, None)  # a second app adds no second filter
    assert app.client is client
    assert warning_client_prioritized_and_token_skipped() not in caplog.text
    other = logging.getLogger("slack_bolt.AsyncApp")
    with caplog.at_level(logging.WARNING, logger="slack_bolt"):
        other.warning("something Bolt really means")
    assert "something Bolt really means" in caplog.text
    assert len(other.filters) == 1
