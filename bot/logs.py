"""Logging set-up: one line per record, with secrets scrubbed from every message."""

from __future__ import annotations

import logging
import os

from bot.base.redact import redact_text

# Libraries that log whole requests, SQL parameters or tool payloads at DEBUG: what a
# task's tools and model see (secrets in arguments included) stays out of the log.
PAYLOAD_LOGGERS = ("aiosqlite", "anthropic", "mcp")


def scrub(text: str) -> str:
    """`text` with credential-shaped strings (Slack, Anthropic, GitHub, AWS, …) replaced."""
    return redact_text(text)


class ScrubbingFormatter(logging.Formatter):
    """Formats as usual, then replaces token-shaped strings (tracebacks included)."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def setup(level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    for noisy in ("slack_bolt", "slack_sdk", "httpx", "httpx2", "apscheduler", *PAYLOAD_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.WARNING)
