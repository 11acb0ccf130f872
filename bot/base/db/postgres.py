"""The PostgreSQL store: a psycopg 3 connection pool with pgvector, behind the database contract.

Callers write the SQL subset both engines accept, with `?` or `:name` placeholders;
`translate()` turns them into psycopg's `%s` / `%(name)s` in one place (cached per SQL text),
leaving quoted literals, identifiers and comments alone. Connections autocommit, so a single
statement is its own transaction; `transaction()` and `batch()` group statements on one
pooled connection. Rows are dicts.

Start-up says plainly what is missing instead of failing later: the driver (the extra
`coworker[postgres]`), a server older than 15, a server without the `vector` extension.
A server that is not reachable yet (a container starting beside the bot) is retried with
back-off before giving up with the reason.

Beyond the contract, the cluster code uses what only PostgreSQL has: LISTEN/NOTIFY
(`notify()`, `listen()`), and migrations run under an advisory lock (`apply_migrations()`)
so replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import select
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from bot.base.db import Database, Params, Row, Statement
from bot.base.errors import BackupUnsupported, DatabaseUnavailable, MigrationError, SettingsError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = 150000
INSTALL_HINT = "pip install 'coworker[postgres]'"
#: `pg_advisory_xact_lock` key held while migrating ("cwmigrat" as ASCII).
MIGRATION_LOCK = 0x63776D6967726174
#: `pg_advisory_xact_lock` key held while creating the `vector` extension.
EXTENSION_LOCK = 0x6377766563746F72
RETRY_FOR = 30.0
_MAX_DELAY = 8.0


class _Migration(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def sql(self) -> str: ...


# -- placeholders ---------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


@lru_cache(maxsize=2048)
def translate(sql: str) -> tuple[str, Literal["none", "positional", "named"]]:
    """`sql` with `?` / `:name` as psycopg's `%s` / `%(name)s`, and which style it used.

    Quoted literals, quoted identifiers, comments and dollar-quoted bodies are copied as
    they are, except that `%` is doubled everywhere (psycopg reads `%` in the whole text).
    `::type` casts are not placeholders. Mixing `?` and `:name` in one statement is an error.
    """
    out: list[str] = []
    styles: set[str] = set()
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = _quoted_end(sql, i)
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif c == "$" and (tag := _DOLLAR_TAG.match(sql, i)) and (i == 0 or not _ident(sql[i - 1])):
            close = sql.find(tag.group(), tag.end())
            end = n if close < 0 else close + len(tag.group())
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif c == "?":
            styles.add("positional")
            out.append("%s")
            i += 1
        elif c == ":" and sql.startswith("::", i):
            out.append("::")
            i += 2
        elif c == ":" and (name := _NAME.match(sql, i + 1)):
            styles.add("named")
            out.append(f"%({name.group()})s")
            i = name.end()
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    if len(styles) > 1:
        raise ValueError(f"SQL mixes ? and :name placeholders: {sql[:80]!r}")
    style = styles.pop() if styles else "none"
    return "".join(out), style  # type: ignore[return-value]


def _ident(c: str) -> bool:
    return c.isalnum() or c == "_"


def _quoted_end(sql: str, start: int) -> int:
    """The index after the literal or identifier that opens at `start` ('' and "" escape)."""
    quote, i = sql[start], start + 1
    while True:
        j = sql.find(quote, i)
        if j < 0:
            return len(sql)
        if sql.startswith(quote * 2, j):
            i = j + 2
            continue
        return j + 1


def bind(sql: str, params: Params = ()) -> tuple[str, Params]:
    """The statement and parameters to hand psycopg (always a parameter container, so the
    doubled `%` of `translate()` is read back as one)."""
    text, style = translate(sql)
    if style == "named":
        if not isinstance(params, Mapping):
            raise TypeError("SQL with :name placeholders needs a mapping of parameters")
        return text, params
    if isinstance(params, Mapping):
        if style == "positional":
            raise TypeError("SQL with ? placeholders needs a sequence of parameters")
        return text, params
    return text, tuple(params)


# -- start-up -------------------------------------------------------------------------------


def describe(url: str) -> str:
    """Where a URL points, without its password: `PostgreSQL at host:port/dbname`."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # a URL libpq cannot parse: say nothing that might hold a secret
        return "PostgreSQL (unparsable DATABASE_URL)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"PostgreSQL at {host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"


def driver() -> Any:
    """The psycopg module, or a `SettingsError` saying how to install it."""
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise SettingsError(
            f"DATABASE_URL is a PostgreSQL URL but its driver is not installed: {INSTALL_HINT}",
            variable="DATABASE_URL",
        ) from None
    return psycopg


def server_problem(version_num: int, vector_available: bool) -> str | None:
    """What keeps a server from running Coworker, as one line for the operator, or None."""
    if version_num < MIN_SERVER_VERSION:
        major = version_num // 10000
        return (
            f"PostgreSQL {major} is too old: Coworker needs PostgreSQL 15 or newer"
            " (upgrade the server, or use the pgvector/pgvector:pg17 image)"
        )
    if not vector_available:
        return (
            "the PostgreSQL server has no `vector` extension: install pgvector on it"
            " (apt install postgresql-NN-pgvector, or use the pgvector/pgvector image)"
        )
    return None


async def connect(url: str, *, retry_for: float = RETRY_FOR) -> psycopg.AsyncConnection[Any]:
    """One connection, retried with back-off while the server is unreachable.

    Raises:
        DatabaseUnavailable: still unreachable after `retry_for` seconds (says why).
    """
    pg = driver()
    deadline = time.monotonic() + retry_for
    delay = 0.25
    while True:
        try:
            conn: psycopg.AsyncConnection[Any] = await pg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=max(2, int(min(10, retry_for)))
            )
            return conn
        except pg.OperationalError as exc:
            reason = _first_line(exc)
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseUnavailable(
                    f"cannot reach {describe(url)} after {retry_for:g} s: {reason}",
                    engine="postgres",
                ) from None
            wait = min(delay, left)
            log.warning(
                "database: %s is not reachable (%s); trying again in %.1f s",
                describe(url),
                reason,
                wait,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, _MAX_DELAY)


async def still_open(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check on every connection it hands out: raise if the server has closed it
    (a restart, a failover, `pg_terminate_backend`, an idle timeout), so the pool drops it
    and hands out a fresh one instead of failing the caller's statement.

    An idle connection has nothing to read unless the server spoke: its goodbye (an error
    message, then the end of the stream) or a notice. Only then is the server asked, so a
    healthy connection costs one `poll()` and no round trip.
    """
    from psycopg_pool import AsyncConnectionPool

    waiting = select.poll()
    waiting.register(conn.pgconn.socket, select.POLLIN)
    if waiting.poll(0):
        await AsyncConnectionPool.check_connection(conn)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def _prepare_server(
    conn: psycopg.AsyncConnection[Any], url: str, *, readonly: bool = False
) -> bool:
    """Check the server version and make sure the `vector` extension exists in the database
    (`readonly`: only look); whether it exists now."""
    import psycopg

    cur = await conn.execute(
        "SELECT current_setting('server_version_num')::int,"
        " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector'),"
        " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')"
    )
    version, available, created = await cur.fetchone() or (0, False, False)
    if problem := server_problem(version, available):
        raise DatabaseUnavailable(f"{describe(url)}: {problem}", engine="postgres")
    if created or readonly:
        return bool(created)
    try:
        async with conn.transaction():
            # Replicas starting together would otherwise race on the catalog's unique index.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (EXTENSION_LOCK,))
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege:
        raise DatabaseUnavailable(
            f"{describe(url)}: the `vector` extension is installed on the server but not in"
            " this database, and this user may not create it: have a superuser run"
            " CREATE EXTENSION vector; in it once",
            engine="postgres",
        ) from None
    return True


async def _adapters(conn: psycopg.AsyncConnection[Any], *, vector: bool = True) -> Any:
    """Type adapters shared by every pooled connection: pgvector, flags, numbers."""
    import psycopg
    from pgvector.psycopg.vector import register_vector_info
    from psycopg.adapt import AdaptersMap, Dumper, Loader
    from psycopg.types import TypeInfo

    class FlagDumper(Dumper):
        """A Python bool as the INTEGER 0/1 that flags are on both engines."""

        oid = psycopg.postgres.types["int2"].oid

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    class NumberLoader(Loader):
        """`numeric` results (SUM of bigints, AVG) as int or float, as SQLite gives them."""

        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            try:
                return int(text)
            except ValueError:
                return float(text)

    adapters = AdaptersMap(psycopg.adapters)
    adapters.register_dumper(bool, FlagDumper)
    adapters.register_loader("numeric", NumberLoader)
    if vector:
        register_vector_info(adapters, await TypeInfo.fetch(conn, "vector"))  # type: ignore[arg-type]
    return adapters


# -- the database ---------------------------------------------------------------------------


class PostgresTx:
    """The handle a transaction body uses: one pooled connection inside BEGIN … COMMIT."""

    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        cur = await self._conn.execute(*bind(sql, params))
        return cur.rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        params = [bind(sql, r)[1] for r in rows]
        if params:
            async with self._conn.cursor() as cur:
                await cur.executemany(translate(sql)[0], params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        cur = await self._conn.execute(*bind(sql, params))
        return await cur.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        cur = await self._conn.execute(*bind(sql, params))
        return await cur.fetchall()

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else next(iter(row.values()))

    async def lock(self, key: str) -> None:
        """Hold `key` until this transaction ends: another transaction locking the same key
        waits, so a read followed by a write cannot interleave with another's."""
        await self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(key),))


def backup_unsupported() -> BackupUnsupported:
    """What `backup` says on PostgreSQL (no connection needed to say it)."""
    return BackupUnsupported(
        "backup copies SQLite files; back up PostgreSQL with pg_dump, e.g."
        ' pg_dump --format=custom --file coworker.dump "$DATABASE_URL"'
        " (restore with pg_restore), or your provider's snapshots",
        engine="postgres",
    )


def lock_key(key: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


class PostgresDatabase(Database):
    """A pool of autocommit connections; `transaction()` and `batch()` group statements."""

    engine = "postgres"

    #: no file: the database is a server
    path: str | None = None

    def __init__(self, pool: AsyncConnectionPool[Any], url: str) -> None:
        import psycopg

        self._pool = pool
        self.url = url
        self.where = describe(url)
        #: the driver's errors, which callers that turn a failure into one line catch
        self.errors: tuple[type[Exception], ...] = (psycopg.Error,)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        retry_for: float = RETRY_FOR,
        readonly: bool = False,
    ) -> PostgresDatabase:
        """Connect (retrying while unreachable), check the server, and open the pool.

        `readonly` only looks (`doctor`): nothing is created, every transaction is read-only.

        Raises:
            SettingsError: the driver is not installed.
            DatabaseUnavailable: unreachable, older than 15, or no `vector` extension.
        """
        driver()
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        conn = await connect(url, retry_for=retry_for)
        try:
            vector = await _prepare_server(conn, url, readonly=readonly)
            adapters = await _adapters(conn, vector=vector)
        finally:
            await conn.close()
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "context": adapters}
        if readonly:
            kwargs["options"] = "-c default_transaction_read_only=on"
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=2 if readonly else max_size,
            open=False,
            kwargs=kwargs,
            name="coworker",
            check=still_open,
        )
        try:
            await pool.open(wait=True, timeout=max(retry_for, 5.0))
        except Exception as exc:
            await pool.close()
            raise DatabaseUnavailable(
                f"cannot open connections to {describe(url)}: {_first_line(exc)}",
                engine="postgres",
            ) from None
        return cls(pool, url)

    async def close(self) -> None:
        await self._pool.close()

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(*bind(sql, params))
            return cur.rowcount

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(*bind(sql, params))
            row: Row | None = await cur.fetchone()
            return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(*bind(sql, params))
            rows: list[Row] = await cur.fetchall()
            return rows

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else next(iter(row.values()))

    async def batch(self, *statements: Statement) -> list[list[Row] | int]:
        """Run `statements` in one transaction; each answers its rows, or its row count.

        They go in psycopg's pipeline mode: BEGIN, every statement and COMMIT are sent
        without waiting for each answer, so a batch costs about one round trip instead of
        one per statement (an agent step writes its model call, spend and checkpoint so).
        A statement that fails rolls the whole batch back, as before."""
        async with self._pool.connection() as conn:
            async with conn.pipeline(), conn.transaction():
                cursors = [await conn.execute(*bind(sql, params)) for sql, params in statements]
            # out of the pipeline: every answer has arrived
            return [await c.fetchall() if c.description else c.rowcount for c in cursors]

    async def tables(self) -> set[str]:
        """The tables of the current schema."""
        rows = await self.fetchall(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        return {r["tablename"] for r in rows}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        """BEGIN … COMMIT on one pooled connection, or ROLLBACK if the body raises."""
        async with self._pool.connection() as conn, conn.transaction():
            yield PostgresTx(conn)

    async def backup_to(self, path: str | Path) -> Path:
        """PostgreSQL is backed up with its own tools; say which."""
        raise backup_unsupported()

    # -- only PostgreSQL ----------------------------------------------------------------

    async def notify(self, channel: str, payload: str = "") -> None:
        """Send a NOTIFY on `channel` (delivered when the sending transaction commits)."""
        await self.execute("SELECT pg_notify(?, ?)", (channel, payload))

    @asynccontextmanager
    async def listen(self, *channels: str) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
        """A dedicated connection LISTENing on `channels`, yielding (channel, payload).

        The connection is outside the pool: it stays open for as long as the caller listens.
        """
        import psycopg
        from psycopg import sql

        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        try:
            for channel in channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

            async def received() -> AsyncIterator[tuple[str, str]]:
                async for note in conn.notifies():
                    yield note.channel, note.payload

            yield received()
        finally:
            await conn.close()

    async def apply_migrations(self, migrations: Sequence[_Migration]) -> list[str]:
        """Apply the pending `migrations`, each in one transaction with its row, under an
        advisory lock, so replicas starting together apply each exactly once.

        Raises:
            MigrationError: a migration failed; it left nothing behind.
        """
        import psycopg

        async with self._pool.connection() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                )
            newly: list[str] = []
            for mig in migrations:
                try:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                        cur = await conn.execute(
                            "SELECT 1 FROM schema_migrations WHERE name = %s", (mig.name,)
                        )
                        if await cur.fetchone() is not None:
                            continue
                        # No parameters: the simple protocol runs the whole file.
                        await conn.execute(mig.sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations (name, applied_at) VALUES (%s, %s)",
                            (mig.name, time.time()),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {mig.name} failed: {_first_line(exc)}", migration=mig.name
                    ) from exc
                log.info("applied migration %s", mig.name)
                newly.append(mig.name)
        return newly
