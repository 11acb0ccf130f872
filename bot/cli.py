"""The operator commands besides `run` and `doctor`: migrate, report, backup, memory."""

from __future__ import annotations

import argparse

from bot.base.db import Database, sqlite_module
from bot.base.errors import CoworkerError
from bot.base.migrations import migrate
from bot.base.settings import Settings


async def run_migrate(settings: Settings) -> int:
    db = await Database.open(settings.database_path)
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
