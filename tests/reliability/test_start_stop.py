"""The real `python -m bot` process at start and at stop, as a supervisor sees it.

A start-up failure (a token Slack refuses, Slack unreachable, the port taken) ends the
process with a non-zero status and one line on stderr, however far start-up got (the
database's thread once kept it alive for ever). SIGTERM, what Docker, Kubernetes and
systemd send, shuts down as SIGINT does: running tasks reach their next checkpoint within
`[runner] shutdown_grace`, the process exits 0, and the next start resumes them.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack
from tests.reliability.bot_process import REPO, bot_env

EXIT_WITHIN = 60.0
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")
CONFIG = """plan_approval = "never"
[runner]
status_interval = "0.05s"
shutdown_grace = "{grace}"
"""


async def run_to_exit(env: dict[str, str], cwd: Path) -> tuple[int, list[str], float]:
    """Run `python -m bot` until it exits (bounded); its status, stderr lines and duration."""
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ANTHROPIC_", "COWORKER_", "DATABASE_", "PORT"))
    }
    full.update(env, PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=cwd,
        env=full,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), EXIT_WITHIN)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"python -m bot did not exit within {EXIT_WITHIN} s") from None
    assert proc.returncode is not None
    return proc.returncode, err.decode().splitlines(), time.monotonic() - started


def the_one_line(stderr: list[str]) -> str:
    """The error line: besides it, stderr may hold only INFO and WARNING log lines."""
    assert not any("Traceback" in line for line in stderr), "\n".join(stderr)
    others = [line for line in stderr if line.strip() and not LOG_LINE.match(line)]
    assert len(others) == 1 and stderr[-1] == others[0], "\n".join(stderr)
    return others[0]


@asynccontextmanager
async def stand_ins() -> AsyncIterator[tuple[FakeSlack, FakeAnthropic]]:
    async with (
        FakeSlack(bot_token="xoxb-right", app_token="xapp-right") as slack,
        FakeAnthropic() as anthropic,
    ):
        yield slack, anthropic


@pytest.fixture
def free_port() -> Iterator[int]:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


async def test_a_rejected_bot_token_exits_2_before_touching_the_database(
    tmp_path: Path,
) -> None:
    async with stand_ins() as (slack, anthropic):
        env = bot_env(slack, anthropic, tmp_path, SLACK_BOT_TOKEN="xoxb-wrong")
        code, stderr, _ = await run_to_exit(env, tmp_path)
    assert code == 2
    assert stderr == ["error: Slack rejected SLACK_BOT_TOKEN (invalid_auth)"]
    assert not (tmp_path / "coworker.db").exists()


async def test_a_rejected_app_token_exits_2_with_one_line(tmp_path: Path) -> None:
    async with stand_ins() as (slack, anthropic):
        env = bot_env(slack, anthropic, tmp_path, SLACK_APP_TOKEN="xapp-wrong")
        code, stderr, _ = await run_to_exit(env, tmp_path)
    assert code == 2
    assert the_one_line(stderr) == "error: Slack rejected SLACK_APP_TOKEN (invalid_auth)"


async def test_slack_unreachable_exits_1_with_one_line(tmp_path: Path, free_port: int) -> None:
    url = f"http://127.0.0.1:{free_port}/api/"
    async with stand_ins() as (slack, anthropic):
        env = bot_env(slack, anthropic, tmp_path, SLACK_API_URL=url)
        code, stderr, _ = await run_to_exit(env, tmp_path)
    assert code == 1
    assert stderr == [f"error: cannot reach Slack at {url} (connection refused)"]


async def test_the_port_in_use_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with stand_ins() as (slack, anthropic):
            env = bot_env(slack, anthropic, tmp_path, SLACK_SIGNING_SECRET="s", PORT=str(port))
            del env["SLACK_APP_TOKEN"]  # HTTP mode
            code, stderr, _ = await run_to_exit(env, tmp_path)
    assert code == 2
    assert the_one_line(stderr) == f"error: cannot listen on PORT {port}: address already in use"
