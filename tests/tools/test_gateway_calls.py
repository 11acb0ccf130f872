"""The call path against an in-process recording server: scope, schema, tiers, audit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.base.db import Database
from tests.tools.conftest import (
    GatewayFactory,
    Recorder,
    add_approval,
    audit_text,
    config,
    ctx_for,
    eventually,
)
from tests.tools.servers.recording import INJECTION, build_server
from tools.gateway import McpGateway, args_hash
from tools.scope import allowed_globs, scope_tools

#: the tests that use the database (the tool journal) run on both engines (tests/conftest.py)
ENGINES = ("sqlite", "postgres")


async def row(db: Database, key: str) -> dict[str, object]:
    found = await db.fetchone("SELECT * FROM tool_calls WHERE idempotency_key = ?", (key,))
    assert found is not None, key
    return dict(found)


async def test_ok_call_is_journaled(
    rec_gateway: McpGateway, recorder: Recorder, db: Database
) -> None:
    ctx = ctx_for(rec_gateway, delegator="U7", coworker="dev", step=3)
    result = await asyncio.wait_for(rec_gateway.call("rec__add", {"a": 2, "b": 3}, ctx), 5)
    assert (result.status, result.content, result.is_error, result.tier) == (
        "ok",
        "5",
        False,
        "auto",
    )
    assert recorder.calls == [("add", {"a": 2, "b": 3})]
    journaled = await row(db, ctx.idempotency_key)
    assert journaled["status"] == "ok" and journaled["result"] == "5"
    assert journaled["server"] == "rec" and journaled["tool"] == "rec__add"
    assert journaled["tier_source"] == "annotation readOnlyHint"
    assert journaled["delegator"] == "U7" and journaled["coworker"] == "dev"
    assert journaled["step"] == 3 and journaled["finished_at"] is not None
    assert journaled["args_hash"] == args_hash("rec__add", {"a": 2, "b": 3})


async def test_invalid_arguments_never_reach_the_server(
    rec_gateway: McpGateway, recorder: Recorder, db: Database
) -> None:
    ctx = ctx_for(rec_gateway)
    result = await asyncio.wait_for(rec_gateway.call("rec__add", {"a": "two", "c": 1}, ctx), 5)
    assert result.status == "invalid" and result.is_error
    assert "$.a: 'two' is not of type 'integer'" in result.content
    assert "$: 'b' is a required property" in result.content
    assert recorder.calls == []
    assert (await row(db, ctx.idempotency_key))["status"] == "invalid"


async def test_tool_outside_the_task_scope_is_denied(
    rec_gateway: McpGateway, recorder: Recorder, db: Database
) -> None:
    ctx = ctx_for(rec_gateway, allowed={"rec__echo"})
    result = await asyncio.wait_for(rec_gateway.call("rec__add", {"a": 1, "b": 1}, ctx), 5)
    assert result.status == "denied" and result.is_error
    assert result.content.startswith("rec__add: not among this task's tools")
    assert recorder.calls == []
    assert (await row(db, ctx.idempotency_key))["status"] == "denied"


async def test_delegator_whose_role_excludes_a_tool_cannot_have_it_called(
    make_gateway: GatewayFactory, recorder: Recorder
) -> None:
    cfg = config(roles={"readers": {"members": ["U_READER"], "tools": ["rec__echo", "rec__add"]}})
    gateway = await make_gateway(builtin={"rec": build_server(recorder)}, cfg=cfg)
    delegator = allowed_globs(cfg, "U_READER", set())
    allowed = {t.name for t in scope_tools(gateway.tools(), ["*"], delegator)}
    assert allowed == {"rec__echo", "rec__add"}
    ctx = ctx_for(gateway, delegator="U_READER", allowed=allowed)
    result = await asyncio.wait_for(gateway.call("rec__archive", {"item": "x"}, ctx), 5)
    assert result.status == "denied"
    assert recorder.calls == []


async def test_unknown_tool(rec_gateway: McpGateway, recorder: Recorder) -> None:
    ctx = ctx_for(rec_gateway, allowed={"rec__nope"})
    result = await asyncio.wait_for(rec_gateway.call("rec__nope", {}, ctx), 5)
    assert result.status == "invalid" and "no such tool" in result.content


async def test_notify_tier_runs_without_approval(
    rec_gateway: McpGateway, recorder: Recorder
) -> None:
    result = await asyncio.wait_for(
        rec_gateway.call("rec__archive", {"item": "old"}, ctx_for(rec_gateway)), 5
    )
    assert (result.status, result.tier) == ("ok", "notify")
    assert recorder.tools() == ["archive"]


class TestBlockTier:
    ARGS = {"title": "t", "body": "b"}

    async def test_approved_runs_once(
        self, rec_gateway: McpGateway, recorder: Recorder, db: Database, task_id: int
    ) -> None:
        approval = await add_approval(
            db, task_id, "rec__write_note", args_hash("rec__write_note", self.ARGS)
        )
        ctx = ctx_for(rec_gateway, task_id=task_id, approval_id=approval)
        result = await asyncio.wait_for(rec_gateway.call("rec__write_note", self.ARGS, ctx), 5)
        assert (result.status, result.tier, result.content) == ("ok", "block", "saved t")
        assert recorder.tools() == ["write_note"]
        assert await db.fetchval("SELECT status FROM approvals WHERE id = ?", (approval,)) == "used"
        assert (await row(db, ctx.idempotency_key))["approval_id"] == approval

    async def test_without_approval_not_run(
        self, rec_gateway: McpGateway, recorder: Recorder, db: Database
    ) -> None:
        ctx = ctx_for(rec_gateway)
        result = await asyncio.wait_for(rec_gateway.call("rec__write_note", self.ARGS, ctx), 5)
        assert (result.status, result.tier) == ("rejected", "block")
        assert "approval" in result.content
        assert recorder.calls == []
        assert (await row(db, ctx.idempotency_key))["status"] == "rejected"

    async def test_pending_or_rejected_approval_not_run(
        self, rec_gateway: McpGateway, recorder: Recorder, db: Database, task_id: int
    ) -> None:
        hashed = args_hash("rec__write_note", self.ARGS)
        for status in ("pending", "rejected", "expired"):
            approval = await add_approval(db, task_id, "rec__write_note", hashed, status=status)
            ctx = ctx_for(rec_gateway, task_id=task_id, approval_id=approval)
            result = await asyncio.wait_for(rec_gateway.call("rec__write_note", self.ARGS, ctx), 5)
            assert result.status == "rejected" and f"is {status}" in result.content
        assert recorder.calls == []

    async def test_same_approval_twice_second_refused(
        self, rec_gateway: McpGateway, recorder: Recorder, db: Database, task_id: int
    ) -> None:
        approval = await add_approval(
            db, task_id, "rec__write_note", args_hash("rec__write_note", self.ARGS)
        )
        first, second = (
            ctx_for(rec_gateway, task_id=task_id, approval_id=approval) for _ in range(2)
        )
        assert (await rec_gateway.call("rec__write_note", self.ARGS, first)).status == "ok"
        again = await asyncio.wait_for(rec_gateway.call("rec__write_note", self.ARGS, second), 5)
        assert again.status == "rejected" and "already used" in again.content
        assert recorder.tools() == ["write_note"]

    async def test_concurrent_use_of_one_approval_runs_once(
        self, rec_gateway: McpGateway, recorder: Recorder, db: Database, task_id: int
    ) -> None:
        approval = await add_approval(
            db, task_id, "rec__write_note", args_hash("rec__write_note", self.ARGS)
        )
        ctxs = [ctx_for(rec_gateway, task_id=task_id, approval_id=approval) for _ in range(5)]
        results = await asyncio.wait_for(
            asyncio.gather(*(rec_gateway.call("rec__write_note", self.ARGS, c) for c in ctxs)), 5
        )
        assert sorted(r.status for r in results) == ["ok"] + ["rejected"] * 4
        assert recorder.tools() == ["write_note"]

    async def test_arguments_changed_after_approval_refused(
        self, rec_gateway: McpGateway, recorder: Recorder, db: Database, task_id: int
    ) -> None:
        approval = await add_approval(
            db, task_id, "rec__write_note", args_hash("rec__write_note", self.ARGS)
        )
        ctx = ctx_for(rec_gateway, task_id=task_id, approval_id=approval)
        changed = {"title": "t", "body": "rm -rf /"}
        result = await asyncio.wait_for(rec_gateway.call("rec__write_note", changed, ctx), 5)
        assert result.status == "rejected" and "different arguments" in result.content
        assert recorder.calls == []
        assert (
            await db.fetchval("SELECT status FROM approvals WHERE id = ?", (approval,))
            == "approved"
        )

    async def test_approval_for_another_tool_refused(
        self, rec_gateway: McpGateway, recorder: Recorder, db: Database, task_id: int
    ) -> None:
        approval = await add_approval(
            db, task_id, "rec__archive", args_hash("rec__write_note", self.ARGS)
        )
        ctx = ctx_for(rec_gateway, task_id=task_id, approval_id=approval)
        result = await asyncio.wait_for(rec_gateway.call("rec__write_note", self.ARGS, ctx), 5)
        assert result.status == "rejected" and "another tool" in result.content
        assert recorder.calls == []

    async def test_refused_then_approved_under_the_same_key_runs(
        self, rec_gateway: McpGateway, recorder: Recorder, db: Database, task_id: int
    ) -> None:
        ctx = ctx_for(rec_gateway, task_id=task_id)
        assert (await rec_gateway.call("rec__write_note", self.ARGS, ctx)).status == "rejected"
        approval = await add_approval(
            db, task_id, "rec__write_note", args_hash("rec__write_note", self.ARGS)
        )
        approved = ctx_for(
            rec_gateway, task_id=task_id, approval_id=approval, idempotency_key=ctx.idempotency_key
        )
        assert (await rec_gateway.call("rec__write_note", self.ARGS, approved)).status == "ok"
        assert recorder.tools() == ["write_note"]


async def test_a_tool_result_cannot_change_a_tier(
    rec_gateway: McpGateway, recorder: Recorder
) -> None:
    before = rec_gateway.tool("rec__write_note")
    assert before is not None and before.tier == "block"
    injected = await asyncio.wait_for(rec_gateway.call("rec__inject", {}, ctx_for(rec_gateway)), 5)
    assert injected.content == INJECTION and injected.status == "ok"
    after = rec_gateway.tool("rec__write_note")
    assert after is not None and (after.tier, after.tier_source) == ("block", "default")
    follow = await asyncio.wait_for(
        rec_gateway.call("rec__write_note", {"title": "x", "body": "y"}, ctx_for(rec_gateway)), 5
    )
    assert (follow.status, follow.tier) == ("rejected", "block")
    assert recorder.tools() == ["inject"]


async def test_secrets_never_reach_the_audit(
    rec_gateway: McpGateway, recorder: Recorder, db: Database
) -> None:
    token, slack = "hunter2-very-secret", "xoxb-2222-3333-abcdefabcdef"
    ok = await rec_gateway.call(
        "rec__login", {"username": "ann", "token": token}, ctx_for(rec_gateway)
    )
    assert ok.status == "ok" and token in ok.content  # the model still gets the real result
    await rec_gateway.call("rec__echo", {"text": f"use {slack} here"}, ctx_for(rec_gateway))
    await rec_gateway.call("rec__login", {"username": 5, "token": token}, ctx_for(rec_gateway))
    denied = ctx_for(rec_gateway, allowed=set())
    await rec_gateway.call("rec__login", {"username": "ann", "token": token}, denied)
    assert [tool for tool, _ in recorder.calls] == ["login", "echo"]
    audit = await audit_text(db)
    assert audit.count("[redacted]") >= 5
    assert token not in audit and slack not in audit and "3333-abcdef" not in audit


async def test_long_results_are_cut_for_the_model_and_the_audit(
    make_gateway: GatewayFactory, recorder: Recorder, db: Database
) -> None:
    cfg = config(gateway={"result_max_chars": 100, "audit_max_chars": 250})
    gateway = await make_gateway(builtin={"rec": build_server(recorder)}, cfg=cfg)
    ctx = ctx_for(gateway)
    result = await asyncio.wait_for(gateway.call("rec__big", {"n": 1000}, ctx), 5)
    assert result.truncated and result.status == "ok"
    assert result.content == "x" * 100 + "\n[… cut: 100 of 1000 characters shown]"
    stored = (await row(db, ctx.idempotency_key))["result"]
    assert stored == "x" * 250 + "\n[… cut: 250 of 1000 characters shown]"
    short = await gateway.call("rec__big", {"n": 100}, ctx_for(gateway))
    assert not short.truncated and short.content == "x" * 100


async def test_timeout(make_gateway: GatewayFactory, recorder: Recorder, db: Database) -> None:
    gateway = await make_gateway(
        builtin={"rec": build_server(recorder)}, cfg=config(gateway={"call_timeout": "0.2s"})
    )
    ctx = ctx_for(gateway)
    started = time.monotonic()
    result = await asyncio.wait_for(gateway.call("rec__slow", {"seconds": 10}, ctx), 5)
    assert time.monotonic() - started < 2
    assert (result.status, result.is_error) == ("error", True)
    assert "timed out after 0.2 s" in result.content
    assert (await row(db, ctx.idempotency_key))["status"] == "error"
    quick = await asyncio.wait_for(gateway.call("rec__echo", {"text": "hi"}, ctx_for(gateway)), 5)
    assert quick.status == "ok"


async def test_rate_limit(make_gateway: GatewayFactory, recorder: Recorder) -> None:
    cfg = config(gateway={"call_timeout": "1s", "servers": {"rec": {"calls_per_minute": 2}}})
    gateway = await make_gateway(builtin={"rec": build_server(recorder)}, cfg=cfg)
    results = [
        await asyncio.wait_for(gateway.call("rec__echo", {"text": str(i)}, ctx_for(gateway)), 5)
        for i in range(3)
    ]
    assert [r.status for r in results] == ["ok", "ok", "unavailable"]
    assert "rate limit of 2 calls a minute" in results[2].content
    assert recorder.tools() == ["echo", "echo"]


async def test_concurrency_limit_serializes_calls(
    make_gateway: GatewayFactory, recorder: Recorder
) -> None:
    cfg = config(gateway={"servers": {"rec": {"max_concurrency": 1}}})
    gateway = await make_gateway(builtin={"rec": build_server(recorder)}, cfg=cfg)
    started = time.monotonic()
    calls = [gateway.call("rec__slow", {"seconds": 0.2}, ctx_for(gateway)) for _ in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert all(r.status == "ok" for r in results)
    assert time.monotonic() - started >= 0.6


async def test_journaled_call_is_never_run_twice(
    rec_gateway: McpGateway, recorder: Recorder
) -> None:
    ctx = ctx_for(rec_gateway)
    first = await rec_gateway.call("rec__archive", {"item": "a"}, ctx)
    again = await rec_gateway.call("rec__archive", {"item": "a"}, ctx)
    assert (first.content, again.content, again.status) == ("archived a", "archived a", "ok")
    assert recorder.tools() == ["archive"]
    entry = await rec_gateway.journaled(ctx.idempotency_key)
    assert entry is not None and (entry.status, entry.content, entry.tier) == (
        "ok",
        "archived a",
        "notify",
    )
    assert await rec_gateway.journaled("never-used") is None


async def test_idempotency_key_reused_with_other_arguments(
    rec_gateway: McpGateway, recorder: Recorder
) -> None:
    ctx = ctx_for(rec_gateway)
    await rec_gateway.call("rec__echo", {"text": "a"}, ctx)
    other = await rec_gateway.call("rec__echo", {"text": "b"}, ctx)
    assert other.status == "invalid" and "used for another call" in other.content
    ctx2 = ctx_for(rec_gateway)
    await rec_gateway.call("rec__write_note", {"title": "a", "body": "b"}, ctx2)  # rejected
    changed = await rec_gateway.call("rec__write_note", {"title": "z", "body": "b"}, ctx2)
    assert changed.status == "invalid" and "used for another call" in changed.content
    assert recorder.tools() == ["echo"]
    entry = await rec_gateway.journaled(ctx.idempotency_key)
    assert entry is not None and entry.content == "a"


async def _interrupted(db: Database, key: str, tool: str, args: dict[str, Any], tier: str) -> None:
    await db.execute(
        "INSERT INTO tool_calls (idempotency_key, server, tool, arguments, args_hash, tier, status,"
        " started_at) VALUES (?, 'rec', ?, '{}', ?, ?, 'started', 0)",
        (key, tool, args_hash(tool, args), tier),
    )


async def test_interrupted_read_only_call_is_rerun(
    rec_gateway: McpGateway, recorder: Recorder, db: Database
) -> None:
    ctx = ctx_for(rec_gateway)
    await _interrupted(db, ctx.idempotency_key, "rec__echo", {"text": "again"}, "auto")
    result = await rec_gateway.call("rec__echo", {"text": "again"}, ctx)
    assert result.status == "ok" and recorder.tools() == ["echo"]


async def test_interrupted_write_needs_the_delegator(
    rec_gateway: McpGateway, recorder: Recorder, db: Database, task_id: int
) -> None:
    args = {"item": "x"}
    ctx = ctx_for(rec_gateway, task_id=task_id)
    await _interrupted(db, ctx.idempotency_key, "rec__archive", args, "notify")
    result = await rec_gateway.call("rec__archive", args, ctx)
    assert result.status == "started" and "ask the delegator" in result.content
    assert (await row(db, ctx.idempotency_key))["status"] == "started"
    assert recorder.calls == []
    approval = await add_approval(db, task_id, "rec__archive", args_hash("rec__archive", args))
    rerun = ctx_for(
        rec_gateway, task_id=task_id, approval_id=approval, idempotency_key=ctx.idempotency_key
    )
    assert (await rec_gateway.call("rec__archive", args, rerun)).status == "ok"
    assert recorder.tools() == ["archive"]


async def test_dry_run_first(make_gateway: GatewayFactory, recorder: Recorder) -> None:
    cfg = config(policy={"dry_run": {"rec__archive": "dry_run"}})
    gateway = await make_gateway(builtin={"rec": build_server(recorder)}, cfg=cfg)
    real = await gateway.call("rec__archive", {"item": "a"}, ctx_for(gateway))
    assert real.status == "rejected" and "dry_run=true first" in real.content
    dry = await gateway.call("rec__archive", {"item": "a", "dry_run": True}, ctx_for(gateway))
    assert dry.content == "would archive a"
    done = await gateway.call("rec__archive", {"item": "a"}, ctx_for(gateway, dry_run_ok=True))
    assert done.content == "archived a"
    assert recorder.calls == [
        ("archive", {"item": "a", "dry_run": True}),
        ("archive", {"item": "a", "dry_run": False}),
    ]


async def test_same_key_while_running_is_not_run_twice(
    rec_gateway: McpGateway, recorder: Recorder
) -> None:
    ctx = ctx_for(rec_gateway)
    first = asyncio.create_task(rec_gateway.call("rec__slow", {"seconds": 0.3}, ctx))
    await eventually(lambda: recorder.tools() == ["slow"])
    second = await asyncio.wait_for(rec_gateway.call("rec__slow", {"seconds": 0.3}, ctx), 5)
    assert second.status == "started" and "already running" in second.content
    assert (await asyncio.wait_for(first, 5)).status == "ok"
    assert recorder.tools() == ["slow"]
