"""The operator commands besides `run`: doctor, migrate, report, backup, memory."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

import anthropic
from slack_sdk.errors import SlackApiError

from bot.base.config import load_config
from bot.base.db import Database, sqlite_module
from bot.base.errors import CoworkerError
from bot.base.migrations import applied, discover, migrate
from bot.base.settings import Settings
from bot.llm import make_client

Check = Callable[[Settings], Awaitable[list[str]]]


async def check_settings(settings: Settings) -> list[str]:
    lines = []
    for name in ("slack_bot_token", "slack_app_token", "slack_signing_secret", "anthropic_api_key"):
        lines.append(f"{name.upper()}: {'set' if getattr(settings, name) else 'not set'}")
    lines.append(
        "mode: " + ("Socket Mode" if settings.socket_mode else f"HTTP on port {settings.port}")
    )
    settings.require_slack()
    if settings.anthropic_api_key is None:
        raise CoworkerError("ANTHROPIC_API_KEY is not set: the bot cannot work without it")
    return lines


async def check_config(settings: Settings) -> list[str]:
    from tools.mcp_config import load_mcp_config

    config = load_config(settings.coworker_config)
    servers = load_mcp_config(settings.coworker_mcp_config)
    return [
        f"{settings.coworker_config}: ok ({len(config.coworkers)} coworker(s), plan_approval={config.plan_approval})",
        f"{settings.coworker_mcp_config}: ok ({len(servers)} server(s))",
    ]


async def check_slack(settings: Settings) -> list[str]:
    from handlers.slack_app import make_client as make_slack_client

    assert settings.slack_bot_token is not None
    client = make_slack_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    try:
        resp = await client.auth_test()
    except SlackApiError as exc:
        raise CoworkerError(f"Slack auth.test failed: {exc.response.get('error')}") from None
    return [
        f"Slack: authenticated as {resp.get('user')} ({resp.get('user_id')}) in {resp.get('team')}"
    ]


async def check_anthropic(settings: Settings) -> list[str]:
    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    client = make_client(key, settings.anthropic_base_url, max_retries=1)
    try:
        page = await client.models.list(limit=5)
    except anthropic.APIError as exc:
        raise CoworkerError(f"Anthropic is not reachable: {type(exc).__name__}") from None
    finally:
        await client.close()
    return [f"Anthropic: reachable ({', '.join(m.id for m in page.data[:5])})"]


async def check_database(settings: Settings) -> list[str]:
    db = await Database.open(settings.database_path)
    try:
        version = await db.fetchval("SELECT vec_version()")
        pending = [m.name for m in discover() if m.name not in await applied(db)]
    finally:
        await db.close()
    state = (
        f"{len(pending)} migration(s) pending (run `python -m bot migrate`)"
        if pending
        else "migrated"
    )
    return [f"database {settings.database_path}: {state}; sqlite-vec {version}"]


async def check_mcp(settings: Settings) -> list[str]:
    from tools.doctor import describe
    from tools.gateway import McpGateway
    from tools.mcp_config import load_mcp_config

    config = load_config(settings.coworker_config)
    db = await Database.open(settings.database_path)
    await migrate(db)
    gateway = McpGateway(load_mcp_config(settings.coworker_mcp_config), config, db)
    try:
        await gateway.start()
        lines = describe(gateway)
        down = [s.name for s in gateway.servers() if not s.up]
    finally:
        await gateway.stop()
        await db.close()
    if down:
        raise CoworkerError("MCP server(s) down: " + ", ".join(down) + "\n  " + "\n  ".join(lines))
    return lines or ["MCP: no servers configured in .mcp.json"]


async def check_memory(settings: Settings) -> list[str]:
    import os

    from memory import load_embedder

    config = load_config(settings.coworker_config)
    embedder, warning = load_embedder(config.memory, os.environ)
    if warning:
        return [f"memory: {warning}"]
    if embedder is None:
        return ['memory: keyword-only search (memory.embeddings = "none")']
    return [f"memory: embeddings by {embedder.name} ({embedder.model})"]


CHECKS: list[tuple[str, Check]] = [
    ("settings", check_settings),
    ("config", check_config),
    ("database", check_database),
    ("slack", check_slack),
    ("anthropic", check_anthropic),
    ("mcp", check_mcp),
    ("memory", check_memory),
]


async def doctor(settings: Settings) -> int:
    """Run every check, say plainly what is wrong, exit non-zero if anything is."""
    failures = 0
    for name, check in CHECKS:
        try:
            lines = await check(settings)
        except CoworkerError as exc:
            failures += 1
            print(f"✗ {name}: {exc}")
            continue
        for line in lines:
            print(f"✓ {line}")
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 0 if not failures else 1


async def run_migrate(settings: Settings) -> int:
    db = await Database.open(settings.database_path)
    try:
        names = await migrate(db)
    finally:
        await db.close()
    print("applied: " + ", ".join(names) if names else "database is up to date")
    return 0


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "doctor":
        return await doctor(settings)
    if args.command == "migrate":
        return await run_migrate(settings)
    if args.command == "report":
        from bot.report_text import report_command

        print(await report_command(settings.database_path, days=args.days, task=args.task))
        return 0
    if args.command == "backup":
        return await run_backup(settings, args.path)
    if args.command == "memory":
        return await run_memory_job(settings, args.action)
    raise CoworkerError(f"unknown command {args.command}")


async def run_backup(settings: Settings, path: str) -> int:
    """A consistent copy of the database, safe while the bot runs (SQLite's backup API)."""
    from memory.backup import backup_to

    db = await Database.open(settings.database_path)
    try:
        written = await backup_to(db, path)
    except (OSError, sqlite_module().Error) as exc:  # a full disk, a path that cannot be written
        raise CoworkerError(f"backup to {path} failed: {exc}") from None
    finally:
        await db.close()
    print(f"backup written to {written}")
    return 0


async def run_memory_job(settings: Settings, action: str) -> int:
    """`memory consolidate` proposes facts and posts them for review; `memory decay` archives."""
    from bot.app import build

    coworker = await build(settings)
    try:
        assert coworker.memory is not None
        if action == "consolidate":
            proposals = await coworker.memory.consolidate()
            await coworker.notifier.facts_proposed(proposals)
            print(f"{len(proposals)} fact(s) proposed for review")
        else:
            print(f"{await coworker.memory.decay()} memory(ies) archived")
    finally:
        await coworker.stop()
    return 0
