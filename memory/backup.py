"""Backups of the whole database with SQLite's online backup API.

The copy runs on the app's own connection (`Database.run_sync`), which holds the database
lock for the duration, so it is a consistent snapshot even while the bot writes: writers
simply wait, as they would for any transaction. The copy is written to a `.partial` file,
checked with `PRAGMA quick_check`, then renamed, so a crash never leaves a truncated file
that looks like a backup.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.base.config import MemoryConfig
from bot.base.db import Database, sqlite_module
from memory.errors import BackupFailed

log = logging.getLogger(__name__)

PREFIX = "coworker-"
SUFFIX = ".db"
#: Only files named like our own backups are ever rotated away.
_BACKUP_NAME = re.compile(r"^coworker-\d{8}-\d{6}\.db$")


async def backup_to(db: Database, path: str | Path) -> Path:
    """Copy the live database to `path` (replaced atomically); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    module = sqlite_module()

    def copy(conn: Any) -> None:
        dest = module.connect(str(partial))
        try:
            conn.backup(dest)
        finally:
            dest.close()

    await db.run_sync(copy)
    await asyncio.to_thread(_check, partial)
    os.replace(partial, path)
    return path


def _check(path: Path) -> None:
    conn = sqlite_module().connect(str(path))
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()
    if result != "ok":
        path.unlink(missing_ok=True)
        raise BackupFailed(f"backup {path.name} failed quick_check: {result}", path=str(path))


def rotate(directory: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `directory`; return what was deleted."""
    backups = sorted(
        p for p in Path(directory).glob(f"{PREFIX}*{SUFFIX}") if _BACKUP_NAME.match(p.name)
    )
    doomed = backups[: max(0, len(backups) - keep)]
    for old in doomed:
        old.unlink(missing_ok=True)
    return doomed


async def nightly_backup(db: Database, config: MemoryConfig, now: datetime | None = None) -> Path:
    """Back up to `backup_dir/coworker-YYYYmmdd-HHMMSS.db` and keep the last `backup_keep`."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    path = await backup_to(db, Path(config.backup_dir) / f"{PREFIX}{stamp}{SUFFIX}")
    removed = rotate(config.backup_dir, config.backup_keep)
    log.info("backup written to %s (%d old removed)", path, len(removed))
    return path
