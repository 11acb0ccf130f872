"""Backups of the whole database with SQLite's online backup API.

The copy runs on the app's own connection (`Database.copy_to`), which holds the database
lock for the duration, so it is a consistent snapshot even while the bot writes: writers
simply wait, as they would for any transaction. The copy is written to a `.partial` file,
checked with `PRAGMA quick_check`, then renamed, so a crash never leaves a truncated file
that looks like a backup; a copy that fails leaves nothing behind (not the `.partial`, not
the folders it made). `backup_target()` says where `python -m bot backup PATH` writes: a
folder means a timestamped file in it, and the live database is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path

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
    made = await asyncio.to_thread(_make_folders, path.parent)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        await db.copy_to(partial)
        await asyncio.to_thread(_check, partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return path


def backup_target(path: str, live: str, now: datetime | None = None) -> Path:
    """Where `backup PATH` writes: PATH, or a timestamped file in it if it is a folder.

    Raises:
        BackupFailed: PATH is the live database (or one of its side files).
    """
    target = Path(path)
    if target.is_dir():
        target = target / _name(now)
    live_files = {Path(live + side).resolve() for side in ("", "-wal", "-shm", "-journal")}
    if target.resolve() in live_files:
        raise BackupFailed(
            f"backup to {target} refused: that is the live database; name another file",
            path=str(target),
        )
    return target


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and missing parents; the ones created, outermost first."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _name(now: datetime | None = None) -> str:
    return f"{PREFIX}{(now or datetime.now(UTC)).strftime('%Y%m%d-%H%M%S')}{SUFFIX}"


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
    path = await backup_to(db, Path(config.backup_dir) / _name(now))
    removed = rotate(config.backup_dir, config.backup_keep)
    log.info("backup written to %s (%d old removed)", path, len(removed))
    return path
