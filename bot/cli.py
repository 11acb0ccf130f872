"""The operator commands besides `run` and `doctor`: migrate, report, backup, memory."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.base.config import load_config
from bot.base.db import SQLITE_PREFIX, backup_refusal, open_database
from bot.base.errors import CoworkerError, LLMUnavailable
from bot.base.migrations import migrate
from bot.base.settings import Settings


async def run_migrate(settings: Settings) -> int:
    db = await open_database(settings.database_url)
    try:
        names = await migrate(db)
    finally:
        await db.close()
    print("applied: " + ", ".join(names) if names else "database is up to date")
    return 0


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        return await run_migrate(settings)
    if args.command == "report":
        from bot.report_text import report_command

        print(await report_command(settings.database_url, days=args.days, task=args.task))
        return 0
    if args.command == "backup":
        return await run_backup(settings, args.path)
    if args.command == "memory":
        return await run_memory_job(settings, args.action)
    raise CoworkerError(f"unknown command {args.command}")


async def run_backup(settings: Settings, path: str) -> int:
    """A consistent copy of the database, safe while the bot runs (SQLite's backup API).

    PATH may be a folder (a timestamped file is written in it); the live database is refused,
    and a copy that fails leaves nothing behind.
    """
    from memory.backup import backup_target, backup_to

    if (refusal := backup_refusal(settings.database_url)) is not None:
        raise refusal
    live = settings.database_path
    target = backup_target(path, live)
    if not await asyncio.to_thread(Path(live).is_file):
        raise CoworkerError(f"no database at {live}: nothing to back up")
    db = await open_database(SQLITE_PREFIX + live, readonly=True)
    # A full disk, a path that cannot be written, the engine refusing.
    failures: tuple[type[Exception], ...] = (OSError, *db.errors)
    try:
        written = await backup_to(db, target)
    except failures as exc:
        raise CoworkerError(f"backup to {target} failed: {exc}") from None
    finally:
        await db.close()
    print(f"backup written to {written}")
    return 0


async def run_memory_job(settings: Settings, action: str) -> int:
    """`memory consolidate` proposes facts and posts them for review; `memory decay` archives."""
    if action == "decay":
        return await run_decay(settings)
    from bot.app import build

    coworker = await build(settings)
    try:
        assert coworker.memory is not None
        proposals = await coworker.memory.consolidate()
        await coworker.notifier.facts_proposed(proposals)
    except LLMUnavailable as exc:
        raise CoworkerError(
            f"memory consolidate: {exc}; no facts were proposed, and the episodes wait for "
            "the next run"
        ) from None
    finally:
        await coworker.stop()
    print(f"{len(proposals)} fact(s) proposed for review")
    return 0


async def run_decay(settings: Settings) -> int:
    """`memory decay`: archive faded memories. It needs the database only (no Slack, no MCP)."""
    from memory.decay import archive_stale
    from memory.store import MemoryStore

    config = load_config(settings.coworker_config, required=settings.named("coworker_config"))
    db = await open_database(settings.database_url)
    try:
        await migrate(db)
        archived = await archive_stale(MemoryStore(db, None, config.memory))
    finally:
        await db.close()
    print(f"{len(archived)} memory(ies) archived")
    return 0
