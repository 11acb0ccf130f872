"""What `doctor` reports about a PostgreSQL database: server, pgvector, migrations, replicas.

It only looks: one connection, no pool, nothing created (not even the `vector` extension)
and no migration applied. Each finding is a value the caller words; `problem` says what
stops the bot from starting on this server, if anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bot.base.db.postgres import connect, server_problem
from bot.cluster import DB_NOW


@dataclass(frozen=True)
class ReplicaSeen:
    id: str
    host: str
    pid: int
    version: str | None
    heartbeat_s: float  # seconds since its last heartbeat


@dataclass
class PostgresStatus:
    server_version: str = ""
    vector_available: bool = False
    vector_version: str | None = None  # installed in this database
    problem: str | None = None
    pending: list[str] = field(default_factory=list)
    replicas: list[ReplicaSeen] = field(default_factory=list)
    leader: str | None = None
    leader_left_s: float | None = None


async def postgres_status(
    url: str, migrations: Sequence[str], *, retry_for: float = 3.0
) -> PostgresStatus:
    """Look at the server behind `url`; `migrations` are the names the bot would apply.

    Raises:
        DatabaseUnavailable: the server cannot be reached (says why).
    """
    status = PostgresStatus()
    conn = await connect(url, retry_for=retry_for)
    try:
        cur = await conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
            " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
            " to_regclass('schema_migrations') IS NOT NULL, to_regclass('replicas') IS NOT NULL"
        )
        row = await cur.fetchone()
        assert row is not None
        version, version_num, available, installed, migrated, clustered = row
        status.server_version = str(version)
        status.vector_available = available is not None
        status.vector_version = installed
        status.problem = server_problem(int(version_num), status.vector_available)
        applied: set[str] = set()
        if migrated:
            cur = await conn.execute("SELECT name FROM schema_migrations")
            applied = {r[0] for r in await cur.fetchall()}
        status.pending = [name for name in migrations if name not in applied]
        if clustered:
            await _cluster(conn, status)
    finally:
        await conn.close()
    return status


async def _cluster(conn: psycopg.AsyncConnection[Any], status: PostgresStatus) -> None:
    cur = await conn.execute(
        f"SELECT id, host, pid, version, {DB_NOW} - heartbeat_at FROM replicas"
        f" WHERE expires_at > {DB_NOW} ORDER BY started_at, id"
    )
    status.replicas = [
        ReplicaSeen(str(r[0]), str(r[1]), int(r[2]), r[3], float(r[4]))
        for r in await cur.fetchall()
    ]
    cur = await conn.execute(
        f"SELECT holder, expires_at - {DB_NOW} FROM leader_leases"
        f" WHERE name = 'scheduler' AND expires_at > {DB_NOW}"
    )
    if (row := await cur.fetchone()) is not None:
        status.leader, status.leader_left_s = str(row[0]), float(row[1])
