"""The SQLite store: one aiosqlite connection with sqlite-vec and FTS5 loaded.

SQLite is the source of truth. The app uses a single connection (aiosqlite runs it on its
own thread); writes that span statements go through `transaction()`, which holds an asyncio
lock and `BEGIN IMMEDIATE`, so coroutines never interleave inside each other's transaction
and no "database is locked" can arise within the process. Other processes (the CLI's
`backup`, `report`) wait on `busy_timeout`.

Python builds differ: some `sqlite3` modules cannot load extensions. `sqlite_module()` picks,
in one place, the first of the standard `sqlite3`, `sqlean` and `pysqlite3` that can.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import aiosqlite
import sqlite_vec

from bot.base.errors import Unreachable

log = logging.getLogger(__name__)

Params = Sequence[Any] | dict[str, Any]
Statement = tuple[str, Params]
MMAP_BYTES = 1 << 30


def marks(n: int) -> str:
    """`?, ?, ?`: one placeholder per value of an `IN (…)` list (values never go into SQL)."""
    return ", ".join("?" * n)


@cache
def sqlite_module() -> ModuleType:
    """The first DB-API sqlite module on this Python that can load extensions."""
    for name in ("sqlite3", "sqlean", "pysqlite3.dbapi2"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        probe = mod.connect(":memory:")
        try:
            if hasattr(probe, "enable_load_extension"):
                return mod
        finally:
            probe.close()
    raise RuntimeError(
        "no SQLite module that can load extensions: pip install sqlean.py (or pysqlite3-binary)"
    )


def _connect_sync(path: str, readonly: bool = False) -> Any:
    mod = sqlite_module()
    target, uri = (_readonly_uri(path), True) if readonly else (path, False)
    conn = mod.connect(target, isolation_level=None, check_same_thread=False, timeout=30, uri=uri)
    try:
        _prepare(conn, readonly)
    except BaseException:  # e.g. "file is not a database": nothing is left open
        conn.close()
        raise
    return conn


def _prepare(conn: Any, readonly: bool) -> None:
    conn.row_factory = sqlite_module().Row
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    # Forgetting is real deletion: freed pages are zeroed so forgotten text leaves the file.
    conn.execute("PRAGMA secure_delete = FAST")
    # Vector search reads the index through the page cache; mapping it roughly halves KNN time.
    conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")


def _readonly_uri(path: str) -> str:
    # Without a -wal file every commit is in the main file, and `immutable` reads it without
    # creating -wal and -shm files; with one (the bot is running), read through it.
    immutable = "" if os.path.exists(path + "-wal") else "&immutable=1"
    return f"file:{quote(path)}?mode=ro{immutable}"


def _why(exc: BaseException, path: str) -> str:
    """Why a database file could not be opened, in a few words."""
    folder = Path(path).parent
    in_the_way = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if in_the_way is not None and not in_the_way.is_dir():
        return f"{in_the_way} is a file, not a folder"
    if isinstance(exc, OSError):
        what = (exc.strerror or type(exc).__name__).lower()
        return f"{what} ({exc.filename})" if exc.filename else what
    if not folder.is_dir():
        return f"its folder {folder} does not exist"
    if Path(path).is_dir():
        return "that is a folder"
    if not os.access(folder, os.W_OK):
        return f"its folder {folder} is read-only"
    return str(exc)


class Tx:
    """The handle a transaction body uses; it runs on the locked connection directly."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> aiosqlite.Cursor:
        return await self._conn.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Any:
        async with self._conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        async with self._conn.execute(sql, params) as cur:
            return list(await cur.fetchall())


class Database:
    """The app's connection. Single statements autocommit; `transaction()` groups them."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: str | Path, *, readonly: bool = False) -> Database:
        """Open (creating the file and its folders) or, `readonly`, only look at a database.

        A read-only open creates nothing and changes nothing, not even the `-wal` and
        `-shm` files beside a database no one has open. A file that cannot be opened is
        `Unreachable`, with the reason in a few words.
        """
        path = str(path)
        try:
            if path != ":memory:" and not readonly:
                await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
            # Connected here, not in aiosqlite's thread: a failure there leaves the thread
            # finishing after the event loop closed, with a traceback on the terminal.
            raw = await asyncio.to_thread(_connect_sync, path, readonly)
        except (OSError, sqlite_module().Error) as exc:
            raise Unreachable(
                f"cannot open the database {path}: {_why(exc, path)}", service="database"
            ) from None
        conn = aiosqlite.Connection(lambda: raw, iter_chunk_size=64)
        await conn
        return cls(conn, path)

    async def close(self) -> None:
        await self._conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """`BEGIN IMMEDIATE` … `COMMIT`, or `ROLLBACK` if the body raises."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn)
                await self._conn.execute("COMMIT")
            except BaseException:
                # Cancelled while a COMMIT was already queued: it ends the transaction first.
                with contextlib.suppress(sqlite_module().OperationalError):
                    if self._conn.in_transaction:
                        await self._conn.execute("ROLLBACK")
                raise

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        async with self._lock:
            cur = await self._conn.execute(sql, params)
            return cur.rowcount

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run one INSERT; return the new rowid."""
        async with self._lock:
            cur = await self._conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    async def fetchone(self, sql: str, params: Params = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        # One hop to the connection's thread (execute, fetch and close together).
        async with self._lock:
            return list(await self._conn.execute_fetchall(sql, params))

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def batch(self, *statements: Statement) -> list[Any]:
        """Run `statements` in one transaction and one hop to the connection's thread.

        For the writes a step makes together (a checkpoint and its counters, a model call and
        its spend): all or none are applied, for the cost of one round trip. Each statement
        answers its rows if it returns any (`RETURNING`, `SELECT`), else its row count.
        """

        def run(conn: Any) -> list[Any]:
            out: list[Any] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    cur = conn.execute(sql, params)
                    out.append(cur.fetchall() if cur.description else cur.rowcount)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return out

        return list(await self.run_sync(run))

    async def copy_to(self, path: str | Path) -> None:
        """A consistent copy of the whole database in a new file at `path`.

        SQLite's online backup API, on this connection's thread and under its lock: writers
        wait as for any transaction, so the copy is one point in time.
        """
        module = sqlite_module()

        def copy(conn: Any) -> None:
            dest = module.connect(str(path))
            try:
                conn.backup(dest)
            finally:
                dest.close()

        await self.run_sync(copy)

    async def run_sync(self, fn: Any) -> Any:
        """Run `fn(raw_sqlite_connection)` on the connection's thread (backup, bulk work)."""
        async with self._lock:
            return await self._conn._execute(fn, self._conn._conn)
