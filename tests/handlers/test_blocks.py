"""handlers/blocks.py: times in a person's zone, and plain notification text."""

from __future__ import annotations

import time

import pytest

from handlers.blocks import local_time, notification_text


def test_a_time_today_is_shown_in_the_zone_with_its_label() -> None:
    at = time.time()
    paris = local_time(at, "Europe/Paris")
    assert paris.endswith((" CET", " CEST")) and len(paris.split()[0]) == 8
    assert local_time(at, None).endswith(" UTC")
    assert local_time(at, "Not/AZone").endswith(" UTC")


def test_an_earlier_day_gets_its_date() -> None:
    assert local_time(0, "America/New_York") == "Dec 31, 19:00 EST"
    assert local_time(0, "UTC") == "Jan 1, 00:00 UTC"


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        ("# Title\n\n**Bold** and `code`", "Title Bold and code"),
        ("See [the run](https://ci/1) and ![img](x.png)", "See the run and img"),
        ("- one\n- two\n1. three\n> quoted", "one two three quoted"),
        ("```python\nx = a_b * c\n```\n---", "x = a_b * c"),
        ("| a | b |\n|---|---|", "a b"),
        ("_emph_ and snake_case and 2*3", "emph and snake_case and 2*3"),
    ],
)
def test_notification_text_drops_markdown_syntax(markdown: str, plain: str) -> None:
    assert notification_text(markdown) == plain


def test_notification_text_is_cut_with_an_ellipsis() -> None:
    text = notification_text("word " * 100, limit=20)
    assert len(text) == 20 and text.endswith("…")


def test_notification_text_leaves_slack_markup_whole() -> None:
    assert notification_text("see <https://x|the run> | <!here|here>") == (
        "see <https://x|the run> <!here|here>"
    )
