"""handlers/mentions.py and the client that applies it to everything the bot posts."""

from __future__ import annotations

import pytest

from handlers.mentions import JOINER, neutralize, neutralize_text
from handlers.slack_app import make_client
from tests.fakes.slack import FakeSlack


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<!channel> heads up", "@channel heads up"),
        ("<!here|here> now", "@here now"),
        ("<!everyone>", "@everyone"),
        ("<!subteam^S0123|@oncall> please", "@oncall please"),
        ("<!subteam^S0123>", "@group"),
        ("ping @channel and @Here.", "ping @channel and @Here."),
    ],
)
def test_a_mass_mention_reads_the_same_and_notifies_nobody(text: str, shown: str) -> None:
    safe = neutralize_text(text)
    assert "<!" not in safe
    assert safe.replace(JOINER, "") == shown
    assert "@channel" not in safe and "@here" not in safe.lower() and "@everyone" not in safe


@pytest.mark.parametrize(
    "text",
    [
        "<@U123> done",
        "at <!date^1700000000^{time}|12:00>",
        "mail ops@here.example or ops@channel",
        "@heresy and @channels",
        "nothing to see",
    ],
)
def test_people_dates_and_lookalikes_are_left_alone(text: str) -> None:
    assert neutralize_text(text) == text


def test_every_string_of_a_payload_is_neutralized() -> None:
    payload = {"text": "<!here>", "blocks": [{"type": "markdown", "text": "hi @everyone"}], "n": 3}
    safe = neutralize(payload)
    assert safe == {
        "text": f"@{JOINER}here",
        "blocks": [{"type": "markdown", "text": f"hi @{JOINER}everyone"}],
        "n": 3,
    }


async def test_the_client_neutralizes_what_it_posts_and_updates() -> None:
    async with FakeSlack(bot_token="xoxb-t") as slack:
        client = make_client("xoxb-t", slack.api_url)
        sent = await client.chat_postMessage(
            channel="C1",
            text="<!channel> done",
            blocks=[{"type": "markdown", "text": "Ask <!subteam^S1|@oncall> or <@U2>"}],
        )
        await client.chat_update(channel="C1", ts=sent["ts"], text="@here again", blocks=[])
        posted, updated = slack.calls_to("chat.postMessage")[0], slack.calls_to("chat.update")[0]
        assert posted.params["text"] == f"@{JOINER}channel done"
        assert posted.params["blocks"][0]["text"] == f"Ask @{JOINER}oncall or <@U2>"
        assert updated.params["text"] == f"@{JOINER}here again"


@pytest.mark.parametrize("text", ["<!here here>", "<!channel foo>", "<!subteam^S1 @oncall>"])
def test_variants_of_the_markup_are_neutralized_too(text: str) -> None:
    assert "<!" not in neutralize_text(text)
