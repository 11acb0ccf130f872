"""Logging set-up: one line per record, with secrets scrubbed from every message."""

from __future__ import annotations

import logging
import os
import re

_SECRET = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-[A-Za-z0-9_-]{8,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,})"
)


def scrub(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


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
    for noisy in ("slack_bolt", "slack_sdk", "httpx", "httpx2", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
