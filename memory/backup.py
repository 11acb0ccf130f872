"""Nightly backups of the whole database, and their rotation.

The copy is the database's own (`Database.backup_to`: on SQLite the online backup API on
the app's connection, a consistent snapshot even while the bot writes, checked and then
renamed into place, so a crash never leaves a truncated file that looks like a backup).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

from bot.base.config import MemoryConfig
from bot.base.db import Database

log = logging.getLogger(__name__)

PREFIX = "coworker-"
SUFFIX = ".db"
#: Only files named like our own backups are ever rotated away.
_BACKUP_NAME = re.compile(r"^coworker-\d{8}-\d{6}\.db$")


async def backup_to(db: Database, path: str | Path) -> Path:
    """Copy the live database to `path` (replaced atomically); return the path."""
    return await db.backup_to(path)


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
