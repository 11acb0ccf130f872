"""The real `python -m bot` process at start and at stop, as a supervisor sees it.

A start-up failure (a token Slack refuses, Slack unreachable, the port taken) ends the
process with a non-zero status and one line on stderr, however far start-up got (the
database's thread once kept it alive for ever). SIGTERM, what Docker, Kubernetes and
systemd send, shuts down as SIGINT does: running tasks reach their next checkpoint within
`[runner] shutdown_grace`, the process exits 0, and the next start resumes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.base.db.sqlite import sqlite_module
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack, app_mention
from tests.reliability.bot_process import REPO, BotProcess, bot_env
from tests.reliability.conftest import effects_mcp
from tests.reliability.script import look_and_note, runs, scripted
from tests.scenarios.harness import until

EXIT_WITHIN = 60.0
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")
CONFIG = """plan_approval = "never"
[runner]
status_interval = "0.05s"
shutdown_grace = "{grace}"
"""


async def run_to_exit(env: dict[str, str], cwd: Path) -> tuple[int, list[str], float]:
    """Run `python -m bot` until it exits (bounded); its status, stderr lines and duration."""
    for name, empty in (("coworker.toml", ""), (".mcp.json", '{"mcpServers": {}}')):
        if not (cwd / name).exists():  # bot_env names them
            (cwd / name).write_text(empty)
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


class StopRun:
    """The bot with the effects server, whose `comment` a test can hold in flight."""

    def __init__(self, tmp: Path, slack: FakeSlack, anthropic: FakeAnthropic, grace: str):
        self.tmp = tmp
        self.hold = tmp / "hold"
        self.effects = tmp / "effects.log"
        (tmp / "coworker.toml").write_text(CONFIG.format(grace=grace))
        mcp = effects_mcp(self.effects, EFFECTS_HOLD=str(self.hold))
        (tmp / ".mcp.json").write_text(json.dumps(mcp))
        anthropic.responder = scripted(look_and_note)
        self.slack = slack
        self.bot = BotProcess(env=bot_env(slack, anthropic, tmp), cwd=tmp, log=tmp / "bot.log")

    def val(self, sql: str) -> object:
        path = self.tmp / "coworker.db"
        conn = sqlite_module().connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute(sql).fetchone()
        finally:
            conn.close()
        return None if row is None else row[0]

    async def start(self) -> None:
        connected = self.slack.connection_count
        await self.bot.start()
        await self.slack.wait_connected(timeout=60, after=connected)

    async def comment_in_flight(self) -> None:
        """Delegate job 1 and wait until its `comment` call has started (and is held)."""
        self.hold.touch()
        await self.slack.send_event(app_mention("job-1: is the deploy still slow?", user="U1"))
        await until(
            lambda: self.val(
                "SELECT 1 FROM tool_calls WHERE tool = 'effects__comment' AND status = 'started'"
            ),
            timeout=60,
            what="the comment call in flight",
        )

    async def sigterm(self) -> float:
        assert self.bot.proc is not None
        self.bot.proc.send_signal(signal.SIGTERM)
        return time.monotonic()


async def test_sigterm_lets_the_running_step_finish_exits_0_and_the_task_resumes(
    tmp_path: Path,
) -> None:
    async with stand_ins() as (slack, anthropic):
        run = StopRun(tmp_path, slack, anthropic, grace="20s")
        try:
            await run.start()
            await run.comment_in_flight()
            sent = await run.sigterm()
            await until(lambda: "SIGTERM: shutting down" in run.bot.log_text(), what="the log")
            run.hold.unlink()  # the step in progress finishes during the grace period
            assert await run.bot.wait_exit(20) == 0
            assert time.monotonic() - sent < 20
            assert run.val("SELECT status FROM tasks WHERE id = 1") == "running"
            assert run.val("SELECT status FROM tool_calls WHERE tool = 'effects__comment'") == "ok"
            assert runs(run.effects, "comment", 1) == 1

            await run.start()  # the next start resumes from the checkpoint
            await until(
                lambda: run.val("SELECT status FROM tasks WHERE id = 1") == "done",
                timeout=60,
                what="T-1 done after the restart",
            )
            assert runs(run.effects, "search", 1) == 1 and runs(run.effects, "comment", 1) == 1
            # One model turn per step: search, comment, the answer; none repeated.
            assert run.val("SELECT COUNT(*) FROM llm_calls WHERE purpose = 'act'") == 3
            await run.sigterm()
            assert await run.bot.wait_exit(20) == 0
        finally:
            await run.bot.kill()
    log = run.bot.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log
    assert log.count("shut down\n") == 2


async def test_sigterm_interrupts_a_step_that_outlasts_the_grace_and_exits_0(
    tmp_path: Path,
) -> None:
    async with stand_ins() as (slack, anthropic):
        run = StopRun(tmp_path, slack, anthropic, grace="1s")
        try:
            await run.start()
            await run.comment_in_flight()  # and never let go
            sent = await run.sigterm()
            assert await run.bot.wait_exit(15) == 0
            assert time.monotonic() - sent < 10
        finally:
            await run.bot.kill()
    log = run.bot.log_text()
    assert "interrupting 1 task(s) mid-step" in log and "Traceback" not in log, log
    assert runs(run.effects, "comment", 1) == 0


async def test_a_database_that_cannot_be_opened_exits_1_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    path = tmp_path / "afile" / "coworker.db"
    async with stand_ins() as (slack, anthropic):
        env = bot_env(slack, anthropic, tmp_path, DATABASE_URL=f"sqlite:///{path}")
        code, stderr, _ = await run_to_exit(env, tmp_path)
    assert code == 1
    expected = (
        f"error: cannot open the database {path}: {tmp_path / 'afile'} is a file, not a folder"
    )
    assert the_one_line(stderr) == expected


async def run_command(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    """`python -m bot ARGS` beside the running bot; (exit status, stdout and stderr)."""
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ANTHROPIC_", "COWORKER_", "DATABASE_", "PORT"))
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env={**full, **env, "PYTHONPATH": str(REPO)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), EXIT_WITHIN)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_a_second_bot_on_one_sqlite_file_exits_1_and_the_read_commands_still_work(
    tmp_path: Path,
) -> None:
    (tmp_path / "coworker.toml").write_text("")
    (tmp_path / ".mcp.json").write_text('{"mcpServers": {}}')
    async with stand_ins() as (slack, anthropic):
        env = bot_env(slack, anthropic, tmp_path)
        first = BotProcess(env=env, cwd=tmp_path, log=tmp_path / "bot.log")
        try:
            await first.start()
            await slack.wait_connected(timeout=60)
            code, stderr, _ = await run_to_exit(env, tmp_path)
            assert code == 1
            db = tmp_path / "coworker.db"
            assert first.proc is not None
            assert the_one_line(stderr) == (
                f"error: another Coworker process (pid {first.proc.pid}) is already running on "
                f"{db}; SQLite serves one process: stop that one first, or use PostgreSQL "
                "(DATABASE_URL=postgresql://...) to run several replicas"
            )
            # What only reads or copies keeps working beside the running bot.
            report = await run_command(env, tmp_path, "report")
            backup = await run_command(env, tmp_path, "backup", str(tmp_path / "copy.db"))
            search = await run_command(env, tmp_path, "memory", "search", "deploys")
            doctor = await run_command(env, tmp_path, "doctor")
            for code, out in (report, backup, search):
                assert code == 0 and "already running" not in out, out
            assert "already running" not in doctor[1] and "Traceback" not in doctor[1]
            assert (tmp_path / "copy.db").stat().st_size > 0
            assert first.running  # the second start took nothing from the first
        finally:
            await first.kill()
        # Once the first is gone (even SIGKILLed), the file is free for the next start.
        connected = slack.connection_count
        await first.start()
        try:
            await slack.wait_connected(timeout=60, after=connected)
        finally:
            await first.kill()
    assert "already running" not in first.log_text()


async def test_an_unreachable_postgresql_is_retried_then_exit_1_with_one_line(
    tmp_path: Path, free_port: int
) -> None:
    url = f"postgresql://coworker:hunter2@127.0.0.1:{free_port}/coworker"
    async with stand_ins() as (slack, anthropic):
        env = bot_env(slack, anthropic, tmp_path, DATABASE_URL=url)
        code, stderr, took = await run_to_exit(env, tmp_path)
    assert code == 1
    line = the_one_line(stderr)
    assert line.startswith(
        f"error: cannot reach PostgreSQL at 127.0.0.1:{free_port}/coworker after 30 s: "
    ), line
    retries = [entry for entry in stderr if "is not reachable" in entry]
    assert len(retries) >= 4  # with back-off: 0.25 s, 0.5 s, 1 s, 2 s, ... up to 8 s apart
    assert "trying again in 0.2 s" in retries[0]
    assert any("trying again in 8.0 s" in entry for entry in retries)
    assert took >= 30
    assert not any("hunter2" in entry for entry in stderr)
