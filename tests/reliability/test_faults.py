"""Issue 9.3: faults in every outside service, and bad files at start.

For each fault the bot keeps serving the other tasks, the affected task is retried (and
finishes) or explained in its own thread, and nothing is lost. The services are the real
clients against the stand-ins (Slack, Anthropic) and the effects MCP server, which can
hang, crash or answer garbage.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.base.config import load_config
from bot.base.errors import ConfigError
from tests.fakes.anthropic import Reply, error_reply, text_reply, tool_reply
from tests.fakes.slack import slash_command
from tests.reliability.bot_process import REPO
from tests.reliability.conftest import effects_mcp
from tests.reliability.script import (
    SEARCH,
    Steps,
    effects,
    job_of,
    look_and_note,
    runs,
    scripted,
)
from tests.scenarios.conftest import plan
from tests.scenarios.harness import Harness, until
from tools.mcp_config import load_mcp_config

NO_PLAN_APPROVAL = 'plan_approval = "never"\n'


def delivered(h: Harness, task: int) -> bool:
    return any(
        f"Done: T-{task}" in str(c.params.get("text")) and c.response and c.response.get("ok")
        for c in h.slack.calls_to("chat.postMessage")
    )


async def start_jobs(h: Harness, *jobs: int) -> None:
    for job in jobs:  # one at a time, so job-n is T-n
        await h.delegate(f"job-{job}: is the deploy still slow?", user=f"U{job}", channel=f"C{job}")


# -- Slack -------------------------------------------------------------------------------


async def test_slack_429_and_5xx_bursts_lose_no_message(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    async with make_harness(mcp=effects_mcp(log), config=NO_PLAN_APPROVAL) as h:
        h.anthropic.responder = scripted(look_and_note)
        h.slack.fail_next("chat.postMessage", times=4, status=429, retry_after=0)
        h.slack.fail_next("chat.update", times=2, status=503)
        h.slack.fail_next("reactions.add", times=2, status=500)
        await start_jobs(h, 1, 2)
        for task in (1, 2):
            await h.wait_status("done", task_id=task, timeout=20)
            await until(lambda t=task: delivered(h, t), what=f"T-{task} delivered")

        def acks() -> int:  # late ones too: the reaction before each is being retried
            posts = h.slack.calls_to("chat.postMessage")
            return sum(1 for c in posts if "Got it" in str(c.params) and c.response["ok"])

        def failed() -> int:
            return sum(1 for c in h.slack.calls if c.response and not c.response.get("ok", True))

        await until(lambda: acks() == 2, what="both acknowledgements")
        # Every injected failure is met; a status update may still be in its retry back-off
        # (slack_sdk waits 0.5 s and more before retrying a 5xx) when the task is delivered.
        await until(lambda: failed() == 8, what="all 8 injected failures met")
        for method in ("chat.postMessage", "chat.update", "reactions.add"):
            await until(  # and each was retried: the method's latest call went through
                lambda m=method: (h.slack.calls_to(m)[-1].response or {}).get("ok"),
                what=f"{method} retried after its failures",
            )
        for job in (1, 2):
            assert runs(log, "comment", job) == 1


async def test_a_deliverable_slack_refuses_is_posted_by_the_sweep(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        answer = asyncio.Event()

        async def final(body: dict[str, Any]) -> Reply:
            await answer.wait()
            return text_reply("job-1: the deploy is slow because of the cache miss.")

        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        h.anthropic.responder = final
        await start_jobs(h, 1)
        await h.anthropic.wait_for_requests(2)
        # Slack answers the deliverable's post with an error slack_sdk does not retry.
        h.slack.fail_next("chat.postMessage", times=1, status=200, error="fatal_error")
        answer.set()
        task = await h.wait_status("done", timeout=10)
        assert not delivered(h, 1) and task.delivery_pending
        assert task.result == "job-1: the deploy is slow because of the cache miss."
        await h.coworker.runner.idle()  # the sweep leaves a task its runner job still holds

        assert await h.coworker.delivery.sweep() == 1  # Slack is back
        assert delivered(h, 1)
        assert not (await h.task()).delivery_pending
        assert await h.coworker.delivery.sweep() == 0  # posted once, not again
        posts = [c for c in h.slack.calls_to("chat.postMessage") if "Done: T-1" in str(c.params)]
        assert [bool(c.response and c.response["ok"]) for c in posts] == [False, True]


async def test_the_sweep_posts_only_the_parts_slack_did_not_take_and_stops_when_refused(
    make_harness: Callable[..., Harness],
) -> None:
    answer = "\n\n".join(f"Section {i}\n" + "word " * 1150 for i in range(2))  # 2 parts
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        go = asyncio.Event()

        async def respond(body: dict[str, Any]) -> Reply:
            # By what is asked, not by arrival order: under load T-1 may ask for its answer
            # before T-2 asks for its plan.
            if (body.get("tool_choice") or {}).get("name") == "submit_plan":
                return tool_reply("submit_plan", plan(("Write", [])))
            await go.wait()
            return text_reply(answer)

        h.anthropic.responder = respond
        await start_jobs(h, 1, 2)
        await h.anthropic.wait_for_requests(4)
        posts = len(h.slack.calls_to("chat.postMessage"))

        def deliverable_posts() -> list[Any]:
            return [
                c
                for c in h.slack.calls_to("chat.postMessage")[posts:]
                if "Done: T-" in str(c.params.get("text"))
            ]

        go.set()
        for task in (1, 2):
            await h.wait_status("done", task_id=task, timeout=10)
        await h.coworker.runner.idle()  # the sweep leaves a task its runner job still holds
        assert all(c.response["ok"] for c in deliverable_posts())  # both delivered in full
        assert len(deliverable_posts()) == 4  # two parts each

        # Now a done task that Slack refused after part 1: the sweep posts part 2 only.
        await h.coworker.db.execute(
            "UPDATE tasks SET delivery_pending = 1, delivered_parts = 1 WHERE id = 1"
        )
        h.slack.fail_next("chat.postMessage", times=1, status=200, error="fatal_error")
        assert await h.coworker.delivery.sweep() == 0  # a retryable refusal: still pending
        assert (await h.task(1)).delivery_pending
        assert await h.coworker.delivery.sweep() == 1
        resent = deliverable_posts()[4:]
        assert [c.response["ok"] for c in resent] == [False, True]
        assert all("Section 0" not in str(c.params["blocks"]) for c in resent)  # not part 1

        # An outage answered by a proxy's HTML page (no Slack error code) is worth retrying.
        await h.coworker.db.execute(
            "UPDATE tasks SET delivery_pending = 1, delivered_parts = 1 WHERE id = 1"
        )
        h.slack.fail_next("chat.postMessage", times=1, status=502, html=True)
        assert await h.coworker.delivery.sweep() == 0
        assert (await h.task(1)).delivery_pending
        assert await h.coworker.delivery.sweep() == 1
        assert len(deliverable_posts()) == 4 + 2 + 2

        # A refusal for good (the channel was archived) ends the attempts.
        await h.coworker.db.execute(
            "UPDATE tasks SET delivery_pending = 1, delivered_parts = 0 WHERE id = 2"
        )
        h.slack.fail_next("chat.postMessage", times=1, status=200, error="is_archived")
        assert await h.coworker.delivery.sweep() == 0
        assert not (await h.task(2)).delivery_pending
        assert await h.coworker.delivery.sweep() == 0
        assert len(deliverable_posts()) == 9  # nothing after the final refusal


async def test_slack_errors_while_a_plan_is_posted_leave_no_stray_work(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.responder = scripted(lambda job: [])
        h.slack.fail_next("chat.update", times=2, status=503)  # planning updates the ack
        await start_jobs(h, 1)
        await until(lambda: h.slack.calls_to("chat.update"), what="a failed update")
        await start_jobs(h, 2)  # wakes the runner while T-1's planning job still retries
        for task in (1, 2):
            await h.wait_status("done", task_id=task, timeout=20)
        await h.stop_app()
        stray = [
            t for t in asyncio.all_tasks() if t.get_name().startswith("task-") and not t.done()
        ]
        assert stray == []  # every coroutine working on a task was stopped with the app


# -- Anthropic ---------------------------------------------------------------------------


def failing_for(job: int, statuses: list[int], then: Steps = look_and_note) -> Any:
    """The scripted model, except that `job`'s acting calls first get `statuses` errors."""
    script = scripted(then)
    kinds = {
        429: "rate_limit_error",
        529: "overloaded_error",
        500: "api_error",
        502: "api_error",
        503: "api_error",
    }

    def respond(body: dict[str, Any]) -> Reply:
        acting = (body.get("tool_choice") or {}).get("name") != "submit_plan"
        if acting and job_of(json.dumps(body["messages"][0])) == job and statuses:
            status = statuses.pop(0)
            return error_reply(status, kinds[status])
        return script(body)

    return respond


async def test_anthropic_429_529_5xx_burst_is_retried_while_others_work(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    async with make_harness(mcp=effects_mcp(log), config=NO_PLAN_APPROVAL) as h:
        h.anthropic.responder = failing_for(1, [429, 529, 500, 503])
        await start_jobs(h, 1, 2)
        for task in (1, 2):
            await h.wait_status("done", task_id=task, timeout=20)
        errors = await h.coworker.db.fetchval(
            "SELECT COUNT(*) FROM llm_calls WHERE error IS NOT NULL"
        )
        assert errors == 0  # the SDK's retries absorbed the burst
        statuses = [
            r for r in h.anthropic.requests if job_of(json.dumps(r.body["messages"][0])) == 1
        ]
        assert len(statuses) >= 4 + 4  # plan + the burst + 3 acting turns
        assert runs(log, "search", 1) == 1 and runs(log, "comment", 1) == 1


async def test_anthropic_down_for_one_task_is_explained_and_resumes(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    async with make_harness(mcp=effects_mcp(log), config=NO_PLAN_APPROVAL) as h:
        outage = [500, 529, 503, 429, 502]  # five answers: the SDK's four retries all fail
        h.anthropic.responder = failing_for(1, outage)
        await start_jobs(h, 1, 2)
        failed = await h.wait_status("failed", task_id=1, timeout=20)
        assert failed.error == "model_unavailable"
        await h.wait_status("done", task_id=2, timeout=20)
        [msg] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "couldn't reach the model API" in str(c.params)
        )
        assert msg.params["thread_ts"] == failed.thread_ts and "resume T-1" in msg.params["text"]
        # The API is back: resuming continues from the checkpoint.
        await h.slack.send_slash_command(slash_command("resume T-1", user="U1"))
        await h.wait_status("done", task_id=1, timeout=20)
        assert runs(log, "search", 1) == 1 and runs(log, "comment", 1) == 1


async def test_anthropic_timeouts_are_retried_or_explained(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    config = NO_PLAN_APPROVAL + '[runner]\nmodel_timeout = "0.5s"\nmodel_retries = 1\n'
    async with make_harness(config=config) as h:
        assert h.coworker.llm.client.timeout == 0.5 and h.coworker.llm.client.max_retries == 1
        script = scripted(lambda job: [])
        hangs = {1: 2, 2: 1}  # job-1 hangs on both tries; job-2 on its first only

        def respond(body: dict[str, Any]) -> Reply:
            job = job_of(json.dumps(body["messages"][0])) or 0
            acting = (body.get("tool_choice") or {}).get("name") != "submit_plan"
            if acting and hangs.get(job):
                hangs[job] -= 1
                return Reply(content=[{"type": "text", "text": "too late"}], delay=5)
            return script(body)

        h.anthropic.responder = respond
        await start_jobs(h, 1, 2)
        failed = await h.wait_status("failed", task_id=1, timeout=20)
        assert failed.error == "model_unavailable"
        await h.slack.wait_for(
            "chat.postMessage",
            lambda c: (
                "couldn't reach the model API" in str(c.params)
                and c.params.get("thread_ts") == failed.thread_ts
            ),
        )
        done = await h.wait_status("done", task_id=2, timeout=20)
        assert done.result == "job-2 finished: all steps done."


# -- MCP servers -------------------------------------------------------------------------


def fault_then_search(fault: str, args: dict[str, Any] | None = None) -> Steps:
    """job-1 calls the faulty tool, then searches; other jobs only search."""

    def steps(job: int) -> list[tuple[str, dict[str, Any]]]:
        search = (SEARCH, {"query": f"job-{job} deploy"})
        return [(f"effects__{fault}", args or {}), search] if job == 1 else [search]

    return steps


def tool_result(h: Harness, task: int, tool: str) -> str:
    """What the model was told about `tool` in task `task`."""
    for req in reversed(h.anthropic.requests):
        if job_of(json.dumps(req.body["messages"][0])) != task:
            continue
        ids = {
            b["id"]
            for m in req.body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_use" and b["name"] == tool
        }
        for m in req.body["messages"]:
            for b in m["content"] if isinstance(m["content"], list) else []:
                if b.get("type") == "tool_result" and b["tool_use_id"] in ids:
                    return json.dumps(b)
    return ""


def fault_config(call_timeout: str) -> str:
    return NO_PLAN_APPROVAL + f'[gateway]\ncall_timeout = "{call_timeout}"\n'


@pytest.mark.parametrize(
    ("fault", "args", "told", "call_timeout"),
    [
        ("stall", {"seconds": 30}, "timed out after 1 s; it may still have run", "1s"),
        # The next call waits up to the call timeout for the restarted server; a loaded
        # machine may need more than a second to start a Python process.
        ("crash", {}, "may or may not have run", "15s"),
        ("garbage", {}, "timed out after 1 s", "1s"),
    ],
)
async def test_mcp_server_that_hangs_crashes_or_answers_garbage(
    make_harness: Callable[..., Harness],
    tmp_path: Path,
    fault: str,
    args: dict[str, Any],
    told: str,
    call_timeout: str,
) -> None:
    log = tmp_path / "effects.log"
    async with make_harness(mcp=effects_mcp(log), config=fault_config(call_timeout)) as h:
        h.anthropic.responder = scripted(fault_then_search(fault, args))
        await start_jobs(h, 1)
        await until(
            lambda: h.coworker.db.fetchval(
                "SELECT 1 FROM tool_calls WHERE tool = ?", (f"effects__{fault}",)
            ),
            what=f"the {fault} call",
        )
        await start_jobs(h, 2)  # arrives while job-1's call is failing
        done = await h.wait_status("done", task_id=2, timeout=20)
        assert done.result == "job-2 finished: all steps done."
        await h.wait_status("done", task_id=1, timeout=20)
        assert told in tool_result(h, 1, f"effects__{fault}")
        # The same server answers job-1's next call: restarted if it died.
        assert runs(log, "search", 1) == 1
        if fault == "crash":
            [crashed] = [e for e in effects(log) if e["tool"] == "crash"]
            [after] = [e for e in effects(log) if e["tool"] == "search" and "job-1" in str(e)]
            assert after["pid"] != crashed["pid"]
        row = await h.coworker.db.fetchone(
            "SELECT status, is_error FROM tool_calls WHERE tool = ?", (f"effects__{fault}",)
        )
        assert row["status"] == "error" and row["is_error"] == 1


# -- Files: config at start, backup --------------------------------------------------------


BAD_CONFIGS = [
    ("coworker.toml", b"[approvals\ntimeout = \n", "not valid TOML"),
    ("coworker.toml", b"\xff\xfe\x00 not text \x80", "not UTF-8"),
    ("coworker.toml", b"a = " + b"[" * 100_000, "nested too deeply"),
    ("coworker.toml", b'[runner]\nconcurrency = "many"\n', "runner.concurrency"),
    ("coworker.toml", b'[policy.tools]\n"x__*" = "sometimes"\n', "policy.tools.x__*"),
    (".mcp.json", b'{"mcpServers": {', "not valid JSON"),
    (".mcp.json", b"\xff\xfe\x00\x80", "not UTF-8"),
    (".mcp.json", b"[" * 100_000, "nested too deeply"),
    (".mcp.json", b"[1, 2]", "mcpServers"),
    (".mcp.json", b'{"mcpServers": {"x": {"args": []}}}', "mcpServers.x.command"),
    (".mcp.json", b'{"mcpServers": {"x": {"command": "${NOT_SET_ANYWHERE}"}}}', "NOT_SET_ANYWHERE"),
]


@pytest.mark.parametrize(("name", "content", "says"), BAD_CONFIGS)
def test_a_corrupt_file_is_one_clear_config_error(
    tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    load = load_config if name.endswith(".toml") else load_mcp_config
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: ") and says in str(err.value)
    assert "\n" not in str(err.value)


async def run_cli(
    *args: str, cwd: Path, env: dict[str, str], launcher: str | None = None
) -> tuple[int, str]:
    """`python -m bot …` (or a launcher that sets limits, then runs it); (exit code, stderr)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ANTHROPIC_", "COWORKER_", "DATABASE_"))
    }
    argv = ["-m", "bot", *args] if launcher is None else ["-c", launcher, *args]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def test_corrupt_files_at_start_exit_2_with_one_line(tmp_path: Path) -> None:
    cases = {
        "toml": ("coworker.toml", b"\xff\xfe\x00 not text \x80"),
        "mcp": (".mcp.json", b"[" * 100_000),
    }
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    cli_runs: list[Any] = []
    for case, (name, content) in cases.items():
        (tmp_path / case).mkdir()
        (tmp_path / case / name).write_bytes(content)
        cli_runs.append(run_cli(cwd=tmp_path / case, env=env))
    for (case, (name, _)), (code, err) in zip(
        cases.items(), await asyncio.gather(*cli_runs), strict=True
    ):
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (case, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], err


FULL_DISK = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024)); "
    "sys.argv[0] = 'bot'; runpy.run_module('bot', run_name='__main__', alter_sys=True)"
)


async def test_backup_to_a_full_disk_or_a_bad_path_fails_with_one_line(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}"}
    code, err = await run_cli("migrate", cwd=tmp_path, env=env)
    assert code == 0, err
    assert (tmp_path / "live.db").stat().st_size > 64 * 1024
    (tmp_path / "a-file").write_text("not a directory")
    bad_path = run_cli("backup", str(tmp_path / "a-file" / "copy.db"), cwd=tmp_path, env=env)
    # Writes past 64 KiB fail (EFBIG) as on a full disk; the live database is only read.
    full = run_cli(
        "backup", str(tmp_path / "full" / "copy.db"), cwd=tmp_path, env=env, launcher=FULL_DISK
    )
    for code, err in await asyncio.gather(bad_path, full):
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1, err
        assert len(lines) == 1 and lines[0].startswith("error: backup to "), err
        assert "copy.db" in lines[0]
    assert not (tmp_path / "full").exists()  # a failed backup leaves nothing, folders included
