"""Backups: consistent while the bot writes, verified, rotated."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_vec

from bot.base.config import MemoryConfig
from bot.base.db.sqlite import sqlite_module
from memory.backup import backup_to, nightly_backup, rotate
from memory.store import MemoryStore


def open_copy(path: Path) -> Any:
    conn = sqlite_module().connect(str(path))
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    return conn


async def test_backup_while_another_coroutine_writes(store: MemoryStore, tmp_path: Path) -> None:
    for i in range(200):
        await store.add("fact", f"fact number {i} about the build", "team")
    stop, writing = asyncio.Event(), asyncio.Event()
    written: list[int] = []

    async def writer() -> None:
        while not stop.is_set():
            written.append(await store.add("fact", f"written during backup {len(written)}", "team"))
            if len(written) == 5:
                writing.set()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(writing.wait(), 5)
    path = await asyncio.wait_for(backup_to(store.db, tmp_path / "b" / "copy.db"), 10)
    stop.set()
    await asyncio.wait_for(task, 5)

    conn = open_copy(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
        assert 200 + 5 <= count <= 200 + len(written)
        ids = [r[0] for r in conn.execute("SELECT id FROM memories ORDER BY id")]
        assert ids == list(range(1, count + 1))  # a prefix: no torn transaction
        assert conn.execute("SELECT count(*) FROM memory_vec").fetchone()[0] == count
        fts = conn.execute("SELECT count(*) FROM memories_fts WHERE memories_fts MATCH 'build'")
        assert fts.fetchone()[0] == 200
    finally:
        conn.close()
    assert not list(path.parent.glob("*.partial"))


async def test_nightly_backup_rotates_and_keeps_foreign_files(
    store: MemoryStore, tmp_path: Path
) -> None:
    config = MemoryConfig(backup_dir=str(tmp_path / "backups"), backup_keep=2)
    (tmp_path / "backups").mkdir()
    foreign = tmp_path / "backups" / "coworker-live.db"
    foreign.write_text("not a backup")
    start = datetime(2025, 1, 1, 3, 0, tzinfo=UTC)
    paths = [await nightly_backup(store.db, config, start + timedelta(days=d)) for d in range(4)]
    kept = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert kept == sorted(["coworker-live.db", paths[2].name, paths[3].name])
    assert paths[3].name == "coworker-20250104-030000.db"
    assert rotate(tmp_path / "backups", 1) == [paths[2]]
