"""The SQLite implementation: one aiosqlite connection with sqlite-vec and FTS5 loaded.

The app uses a single connection (aiosqlite runs it on its own thread); writes that span
statements go through `transaction()`, which holds an asyncio lock and `BEGIN IMMEDIATE`,
so coroutines never interleave inside each other's transaction and no "database is locked"
can arise within the process. Other processes (the CLI's `backup`, `report`) wait on
`busy_timeout`. Rows come back as dicts, built on the connection's thread.

Python builds differ: some `sqlite3` modules cannot load extensions. `sqlite_module()` picks,
in one place, the first of the standard `sqlite3`, `sqlean` and `pysqlite3` that can; it
and the connection stay inside this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import aiosqlite
import sqlite_vec

from bot.base.db import Database, Engine, Params, Row, Statement
from bot.base.errors import AlreadyRunning, BackupFailed, Unreachable

log = logging.getLogger(__name__)

MMAP_BYTES = 1 << 30
T = TypeVar("T")


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


def split_script(sql: str) -> list[str]:
    """A script's complete statements (trigger bodies stay whole), for the migrations."""
    complete = sqlite_module().complete_statement
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        current += line
        if complete(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not current.strip().startswith("--"):
        statements.append(current.strip())
    return statements


def _dict_row(cursor: Any, row: tuple[Any, ...]) -> Row:
    return dict(zip([column[0] for column in cursor.description], row, strict=True))


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
    conn.row_factory = _dict_row
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


def _first(rows: list[Row]) -> Any:
    return next(iter(rows[0].values())) if rows else None


class SQLiteTx:
    """The handle a transaction body uses; it runs on the locked connection directly."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        # One hop: the cursor is left to the garbage collector rather than closed in another.
        cur = await self._conn.execute(sql, params)
        return int(cur.rowcount)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))  # type: ignore[arg-type]

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        return _first(await self.fetchall(sql, params))

    async def lock(self, key: str) -> None:
        """Nothing to do: `BEGIN IMMEDIATE` already serializes every writing transaction."""


class SQLiteDatabase(Database):
    """The app's connection. Single statements autocommit; `transaction()` groups them."""

    engine: ClassVar[Engine] = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path
        self.errors = (sqlite_module().Error,)
        self._claim: int | None = None

    @classmethod
    async def open(cls, path: str | Path, *, readonly: bool = False) -> SQLiteDatabase:
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
        if self._claim is not None:
            os.close(self._claim)  # the kernel drops the flock with the last descriptor
            self._claim = None

    async def claim_process(self) -> None:
        """Hold an exclusive `flock` on `<database>.lock` for as long as this process runs the
        bot: a second bot on the same file is refused in one line. The kernel releases it
        when the process ends, however it ends, so a crash leaves nothing to clean up.
        (SQLite's own locks are per transaction and do not say "a bot is running".)"""
        if self.path is None or self.path == ":memory:" or self._claim is not None:
            return
        self._claim = await asyncio.to_thread(_claim_file, self.path)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteTx]:
        """`BEGIN IMMEDIATE` … `COMMIT`, or `ROLLBACK` if the body raises."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteTx(self._conn)
                await self._conn.execute("COMMIT")
            except BaseException:
                # Cancelled while a COMMIT was already queued: it ends the transaction first.
                with contextlib.suppress(sqlite_module().OperationalError):
                    if self._conn.in_transaction:
                        await self._conn.execute("ROLLBACK")
                raise

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._lock:
            cur = await self._conn.execute(sql, params)
            return int(cur.rowcount)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        # One hop to the connection's thread (execute, fetch and close together).
        async with self._lock:
            return list(await self._conn.execute_fetchall(sql, params))  # type: ignore[arg-type]

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        return _first(await self.fetchall(sql, params))

    async def batch(self, *statements: Statement) -> list[list[Row] | int]:
        """Run `statements` in one transaction and one hop to the connection's thread.

        For the writes a step makes together (a checkpoint and its counters, a model call and
        its spend): all or none are applied, for the cost of one round trip.
        """

        def run(conn: Any) -> list[list[Row] | int]:
            out: list[list[Row] | int] = []
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

        return await self._run(run)

    async def tables(self) -> set[str]:
        rows = await self.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r["name"] for r in rows}

    async def backup_to(self, path: str | Path) -> Path:
        """SQLite's online backup API, on the app's own connection, which holds the database
        lock meanwhile: a consistent snapshot while the bot writes (writers simply wait).

        The copy goes to a `.partial` file, is checked with `PRAGMA quick_check`, then
        renamed, so a crash never leaves a truncated file that looks like a backup.

        Raises:
            BackupFailed: the copy failed its check.
        """
        path = Path(path)
        made = await asyncio.to_thread(_make_folders, path.parent)
        partial = path.with_name(path.name + ".partial")
        module = sqlite_module()

        def copy(conn: Any) -> None:
            dest = module.connect(str(partial))
            try:
                conn.backup(dest)
            finally:
                dest.close()

        try:
            partial.unlink(missing_ok=True)
            await self._run(copy)
            await asyncio.to_thread(_check, partial)
            os.replace(partial, path)
        except BaseException:  # nothing is left behind: not the .partial, not its folders
            partial.unlink(missing_ok=True)
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        return path

    async def _run(self, fn: Callable[[Any], T]) -> T:
        """`fn(connection)` on the connection's thread, in one hop."""
        async with self._lock:
            result: T = await self._conn._execute(fn, self._conn._conn)
            return result


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and missing parents; the ones created, outermost first."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _check(path: Path) -> None:
    conn = sqlite_module().connect(str(path))
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()
    if result != "ok":
        raise BackupFailed(f"backup {path.name} failed quick_check: {result}", path=str(path))


def _claim_file(path: str) -> int:
    """An open descriptor holding `<path>.lock` exclusively, with this process's id in it."""
    lock_path = f"{path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyRunning(
            f"another Coworker process (pid {holder}) is already running on {path}; SQLite "
            "serves one process: stop that one first, or use PostgreSQL "
            "(DATABASE_URL=postgresql://...) to run several replicas",
            path=path,
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
