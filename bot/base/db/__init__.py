"""The database: one interface, an implementation per engine, and the factory that picks one.

Callers write SQL in the subset both engines accept and read rows by column name:

- placeholders `?` (positional) or `:name` (named), one per value, never a value in the SQL
  text (`marks(n)` writes the `?, ?, ?` of an `IN (…)` list);
- `INSERT … ON CONFLICT … DO NOTHING`; a new id from `INSERT … RETURNING id` and `fetchval`;
- `IS NOT DISTINCT FROM ?` for a comparison that may meet NULL on either side;
- `CAST(? AS TEXT)` (or `DOUBLE PRECISION`, `BIGINT`) where a parameter may be NULL and
  nothing else tells PostgreSQL its type (`CAST(? AS TEXT) IS NULL OR …`);
- flags are integers 0/1, times epoch seconds, JSON is text: no engine's JSON functions (a
  value a query must look at gets its own column).

Engine-specific SQL lives only in the implementations (`bot.base.db.sqlite`, and the
PostgreSQL one), each engine's migrations and memory search modules. Callers never see a
cursor or a connection: single statements autocommit, `transaction()` groups statements
that must commit together, and `batch()` runs a fixed list of them in one transaction and
one round trip (the agent loop's per-step writes).

The shared contract with the PostgreSQL side is /work/briefs/db-interface.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from bot.base.errors import CoworkerError, SettingsError

#: A row, read by column name.
Row = dict[str, Any]
Params = Sequence[Any] | Mapping[str, Any]
Statement = tuple[str, Params]
Engine = Literal["sqlite", "postgres"]

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def marks(n: int) -> str:
    """`?, ?, ?`: one placeholder per value of an `IN (…)` list (values never go into SQL)."""
    return ", ".join("?" * n)


class Tx(Protocol):
    """Statements inside an open transaction (`Database.transaction()`)."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement once per parameter set."""

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None."""

    async def lock(self, key: str) -> None:
        """Hold a lock named `key` until the transaction ends, for a read followed by a write
        that must not race another transaction's (a no-op where every writing transaction
        is serialized anyway, as on SQLite)."""


class Database(ABC):
    """A connection (or pool) to the app's database."""

    engine: ClassVar[Engine]
    #: The engine driver's own error classes: what a caller that turns a database failure
    #: into one line (the CLI, migrations) catches.
    errors: tuple[type[Exception], ...] = ()
    #: The database file (SQLite), or None (in memory, or a server).
    path: str | None = None

    @abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    @abstractmethod
    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None."""

    @abstractmethod
    async def batch(self, *statements: Statement) -> list[list[Row] | int]:
        """Run `statements` in one transaction, in one round trip: all or none apply.

        Each answers its rows if it returns any (`RETURNING`, `SELECT`), else its row count.
        """

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    async def tables(self) -> set[str]:
        """The names of the tables that exist (to tell a blank database from a migrated one
        without writing)."""

    @abstractmethod
    async def backup_to(self, path: str | Path) -> Path:
        """A consistent copy of the whole database at `path`, safe while the bot writes.

        Raises:
            CoworkerError: the engine has no such copy (PostgreSQL: use `pg_dump`).
        """

    async def claim_process(self) -> None:
        """Mark this process as the bot serving this database, until `close()`.

        Engines that serve one process (SQLite) refuse a second with `AlreadyRunning`;
        PostgreSQL takes replicas, so there it does nothing. Commands that only read or copy
        (`doctor`, `report`, `backup`, `memory search`) do not claim.
        """
        return None

    @abstractmethod
    async def close(self) -> None: ...


def sqlite_path(url: str) -> str:
    """The file path in a `sqlite:///…` URL (`sqlite:////abs/path` for an absolute one)."""
    return url.removeprefix(SQLITE_PREFIX)


def describe_url(url: str) -> str:
    """Where `url` points, without its password: the SQLite file, or `PostgreSQL at
    host:port/dbname`."""
    if url.startswith(POSTGRES_PREFIXES):
        from bot.base.db.postgres import describe

        return describe(url)
    return sqlite_path(url)


def backup_refusal(url: str) -> CoworkerError | None:
    """What `backup` answers, without connecting, for an engine it does not copy (PostgreSQL:
    use `pg_dump`); None where it can copy (SQLite)."""
    if url.startswith(POSTGRES_PREFIXES):
        from bot.base.db.postgres import backup_unsupported

        return backup_unsupported()
    return None


async def open_database(url: str, *, readonly: bool = False) -> Database:
    """Open the database `url` names: `sqlite:///path` or `postgresql://…` / `postgres://…`.

    `readonly` only looks (`doctor`): nothing is created or changed.

    Raises:
        SettingsError: a URL of no known engine, or PostgreSQL without its driver installed.
        Unreachable: the database cannot be opened or reached.
    """
    if url.startswith(SQLITE_PREFIX):
        from bot.base.db.sqlite import SQLiteDatabase

        return await SQLiteDatabase.open(sqlite_path(url), readonly=readonly)
    if url.startswith(POSTGRES_PREFIXES):
        from bot.base.db.postgres import PostgresDatabase

        return await PostgresDatabase.open(url, readonly=readonly)
    raise SettingsError(
        "DATABASE_URL must start with sqlite:/// (or postgresql://)", variable="DATABASE_URL"
    )
