"""Shared fixtures: an isolated environment and a fresh migrated database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.base.db import Database, open_database
from bot.base.migrations import migrate
from tests.postgres_server import pg_db, postgres_server, postgres_url

__all__ = ["pg_db", "postgres_server", "postgres_url"]  # fixtures for every test

_OUR_VARS = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "DATABASE_URL",
    "COWORKER_CONFIG",
    "COWORKER_MCP_CONFIG",
    "PORT",
    "PUBLIC_URL",
    "COWORKER_SECRET_KEY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "VOYAGE_API_KEY",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No operator settings leak in; the database and config files live in tmp_path."""
    for name in _OUR_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'coworker.db'}")
    # COWORKER_CONFIG and COWORKER_MCP_CONFIG stay unset: their defaults, ./coworker.toml and
    # ./.mcp.json, are in tmp_path, and may be missing (set explicitly, they must exist).
    return tmp_path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with `ENGINES = ("sqlite", "postgres")` runs each test that uses the
    database (the `db` fixture, directly or through others) once per engine."""
    engines = getattr(metafunc.module, "ENGINES", None)
    if engines and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", engines, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The engine of `db`: SQLite unless the module asks for both (`ENGINES`)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
async def db(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    """A fresh, fully migrated database: a temporary SQLite file, or a PostgreSQL database of
    the session's server (emptied for the next test afterwards)."""
    if engine == "postgres":
        server = request.getfixturevalue("postgres_server")
        name = await server.take_migrated()
        database: Database = await open_database(server.url(name))
        try:
            yield database
        finally:
            await database.close()
            await server.give_back(name)
        return
    database = await open_database(f"sqlite:///{tmp_path / 'test.db'}")
    await migrate(database)
    try:
        yield database
    finally:
        await database.close()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
