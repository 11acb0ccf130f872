"""Schema migrations: numbered `.sql` files in `migrations/`, applied in order.

Each file runs inside one transaction together with its row in `schema_migrations`, so a
failing migration leaves the database exactly as it was. File names are `NNNN_name.sql`;
numbers must be unique.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bot.base.db import Database, sqlite_module
from bot.base.errors import MigrationError

log = logging.getLogger(__name__)

# `migrations/` sits beside `bot/` in a checkout and in site-packages alike (the wheel ships
# it as package data), so the path follows this file rather than the working directory.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, ordered; duplicate numbers or none at all are an error."""
    paths = sorted(directory.glob("*.sql"))
    if not paths:  # an install without its schema would call any database "up to date"
        raise MigrationError(
            f"no migrations in {directory}: this installation of Coworker is incomplete",
            migration=str(directory),
        )
    found: dict[int, Migration] = {}
    for path in paths:
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"bad migration file name {path.name}", migration=path.name)
        number = int(m.group(1))
        if number in found:
            raise MigrationError(
                f"{path.name} reuses number {number} of {found[number].name}", migration=path.name
            )
        found[number] = Migration(number, path.stem, path.read_text(encoding="utf-8"))
    return [found[n] for n in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (trigger bodies stay whole)."""
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


async def applied(db: Database) -> set[str]:
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    return {r[0] for r in await db.fetchall("SELECT name FROM schema_migrations")}


async def pending(db: Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """The migrations not yet applied, found without writing (works on a read-only open)."""
    if await db.fetchval("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"):
        done = {r[0] for r in await db.fetchall("SELECT name FROM schema_migrations")}
    else:
        done = set()
    return [m.name for m in discover(directory) if m.name not in done]


async def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; return the names applied."""
    done = await applied(db)
    newly: list[str] = []
    for mig in discover(directory):
        if mig.name in done:
            continue
        try:
            async with db.transaction() as tx:
                for statement in split_statements(mig.sql):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                    (mig.name, time.time()),
                )
        except sqlite_module().Error as exc:
            raise MigrationError(f"migration {mig.name} failed: {exc}", migration=mig.name) from exc
        log.info("applied migration %s", mig.name)
        newly.append(mig.name)
    return newly
