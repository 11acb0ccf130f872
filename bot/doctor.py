"""`python -m bot doctor`: look at every part the bot needs and say plainly what is wrong.

Doctor only looks. It never creates the database or its folder, never applies migrations
(it says how many are pending), and posts nothing. Each line has one symbol for its state:

    ✓ ok          ! works, but worth a look          ✗ the bot cannot work until fixed
    - not checked (what it needs is reported above)

Every problem is one line, said once: the settings and config files are read once and the
checks that need them share them. A check that fails reports its own failure and the
others still run; nothing a check raises reaches the terminal as a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import aiohttp
import anthropic
from mcp.server.mcpserver import MCPServer
from slack_sdk.errors import SlackApiError

from bot.base.config import Config, load_config
from bot.base.db import (
    POSTGRES_PREFIXES,
    SQLITE_PREFIX,
    describe_url,
    open_database,
    sqlite_path,
)
from bot.base.errors import CoworkerError, SettingsError
from bot.base.migrations import MIGRATIONS_DIR, discover, migrate, pending
from bot.base.secretbox import SecretBox, token_box
from bot.base.settings import Settings, hint, read_settings
from tools.mcp_config import ServerSpec, load_mcp_config

log = logging.getLogger(__name__)

State = Literal["ok", "warn", "error", "skip"]
SYMBOLS: dict[State, str] = {"ok": "✓", "warn": "!", "error": "✗", "skip": "-"}


@dataclass(frozen=True)
class Line:
    state: State
    text: str
    details: tuple[str, ...] = ()

    def render(self) -> str:
        return "\n".join(
            [f"{SYMBOLS[self.state]} {self.text}", *(f"    {d}" for d in self.details)]
        )


def ok(text: str, details: Iterable[str] = ()) -> Line:
    return Line("ok", text, tuple(details))


def warn(text: str) -> Line:
    return Line("warn", text)


def error(text: str, details: Iterable[str] = ()) -> Line:
    return Line("error", text, tuple(details))


def skip(text: str) -> Line:
    return Line("skip", text)


@dataclass
class Findings:
    """What the checks read once and share (None: it could not be read; said already)."""

    settings: Settings
    problems: dict[str, str]
    config: Config | None = None
    servers: dict[str, ServerSpec] | None = None
    lines: list[Line] = field(default_factory=list)


Check = Callable[[Findings], Awaitable[list[Line]]]


# -- settings and files ------------------------------------------------------------------


SLACK_VARIABLES = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")


async def check_settings(f: Findings) -> list[Line]:
    s = f.settings
    lines = [_variable(f, "SLACK_BOT_TOKEN", s.slack_bot_token is not None, required=True)]
    if "SLACK_APP_TOKEN" in f.problems or s.socket_mode:
        lines.append(_variable(f, "SLACK_APP_TOKEN", s.socket_mode, note="Socket Mode"))
    else:
        lines.append(ok(f"SLACK_APP_TOKEN: not set, so HTTP mode on PORT {s.port}"))
    if s.socket_mode and s.slack_signing_secret is None:
        lines.append(ok("SLACK_SIGNING_SECRET: not needed in Socket Mode"))
    else:
        secret = s.slack_signing_secret is not None
        lines.append(_variable(f, "SLACK_SIGNING_SECRET", secret, required=True))
    lines.append(_variable(f, "ANTHROPIC_API_KEY", s.anthropic_api_key is not None, required=True))
    for name, problem in f.problems.items():
        if name not in (*SLACK_VARIABLES, "ANTHROPIC_API_KEY"):
            lines.append(error(f"{name}: {problem} ({hint(name)})"))
    return lines


def _variable(
    f: Findings, name: str, present: bool, *, required: bool = False, note: str = ""
) -> Line:
    if name in f.problems:
        return error(f"{name}: {f.problems[name]} ({hint(name)})")
    if present:
        return ok(f"{name}: set" + (f" ({note})" if note else ""))
    if required:
        return error(f"{name}: not set ({hint(name)})")
    return ok(f"{name}: not set")


async def check_files(f: Findings) -> list[Line]:
    s, lines = f.settings, []
    try:
        f.config = load_config(s.coworker_config, required=s.named("coworker_config"))
        lines.append(ok(f"{s.coworker_config}: {_describe_config(s.coworker_config, f.config)}"))
    except CoworkerError as exc:
        lines.append(error(str(exc)))
    try:
        servers = load_mcp_config(s.coworker_mcp_config, required=s.named("coworker_mcp_config"))
        f.servers = servers
        names = ", ".join(servers) or "none besides the built-in slack and memory"
        lines.append(ok(f"{s.coworker_mcp_config}: MCP servers: {names}"))
    except CoworkerError as exc:
        lines.append(error(str(exc)))
    return lines


def _describe_config(path: Path, config: Config) -> str:
    if not path.exists():
        return "not found, so every setting has its default"
    names = ", ".join(c.name for c in config.coworkers) or "none configured"
    return f"ok (coworkers: {names}; plan_approval = {config.plan_approval})"


# -- the database --------------------------------------------------------------------------


async def check_database(f: Findings) -> list[Line]:
    if "DATABASE_URL" in f.problems:
        return [skip("database: not checked until DATABASE_URL is fixed")]
    if f.settings.database_url.startswith(POSTGRES_PREFIXES):
        return await check_postgres(f.settings.database_url)
    return await check_sqlite(f.settings.database_path)


async def check_postgres(url: str) -> list[Line]:
    """The server, pgvector, pending migrations, the live replicas and the leader: one line
    each, from one read-only connection (nothing created, nothing migrated)."""
    from bot.cluster.status import postgres_status

    names = [m.name for m in discover(MIGRATIONS_DIR / "postgres")]
    status = await postgres_status(url, names)
    where = f"database {describe_url(url)}"
    if status.problem:  # too old, or no pgvector on the server: nothing else matters yet
        return [error(f"{where}: {status.problem}")]
    lines = [ok(f"{where}: server {status.server_version}")]
    if status.vector_version:
        lines.append(ok(f"{where}: pgvector {status.vector_version} installed"))
    else:
        lines.append(
            warn(
                f"{where}: pgvector available, not yet installed in this database; the bot "
                "runs CREATE EXTENSION vector at start (its role needs CREATE on the database)"
            )
        )
    if status.pending:
        lines.append(
            warn(
                f"{where}: {len(status.pending)} migration(s) pending; the bot applies them at "
                "start (or run `python -m bot migrate`)"
            )
        )
    else:
        lines.append(ok(f"{where}: migrated"))
    seen = [f"{r.id} ({r.heartbeat_s:.0f} s ago)" for r in status.replicas]
    lines.append(
        ok(f"replicas: {len(seen)} live: {', '.join(seen)}")
        if seen
        else ok("replicas: none running (none has sent a heartbeat within its lease)")
    )
    if status.leader is not None:
        lines.append(
            ok(f"leader: {status.leader} ({status.leader_left_s or 0:.0f} s of lease left)")
        )
    elif seen:
        lines.append(warn("leader: none holds the lease; a replica takes it within a lease"))
    else:
        lines.append(ok("leader: none (no replica running)"))
    return lines


async def check_sqlite(path: str) -> list[Line]:
    """The SQLite file: there (or creatable), readable, writable, migrated; opened read-only."""
    where = f"database {path}"
    exists, problem = await asyncio.to_thread(_file_problem, Path(path))
    if not exists:
        if problem:
            return [error(f"{where}: cannot be created: {problem}")]
        return [warn(f"{where}: does not exist yet; the bot creates it at start")]
    db = await open_database(SQLITE_PREFIX + path, readonly=True)
    try:
        version = await db.fetchval("SELECT vec_version()")
        todo = await pending(db)
    finally:
        await db.close()
    lines = [error(f"{where}: {problem}")] if problem else []
    if todo:
        lines.append(
            warn(
                f"{where}: {len(todo)} migration(s) pending; the bot applies them at start "
                "(or run `python -m bot migrate`)"
            )
        )
    else:
        lines.append(ok(f"{where}: migrated; sqlite-vec {version}"))
    return lines


def _file_problem(path: Path) -> tuple[bool, str | None]:
    """Whether the file exists, and what stops the bot creating or writing it, if anything."""
    if path.exists():
        folder = path.resolve().parent
        if os.access(path, os.W_OK) and os.access(folder, os.W_OK):
            return True, None
        return True, "read-only; the bot needs to write the file and its folder"
    folder = path.resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return False, f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK):
        return False, f"{folder} is read-only"
    return False, None


# -- the services ----------------------------------------------------------------------------


async def check_slack(f: Findings) -> list[Line]:
    from handlers.slack_app import make_client

    s = f.settings
    if s.slack_bot_token is None:
        return [skip("Slack: not checked until SLACK_BOT_TOKEN is set")]
    client = make_client(s.slack_bot_token.get_secret_value(), s.slack_api_url)
    try:
        resp = await client.auth_test()
        lines = [
            ok(
                f"Slack: signed in as {resp.get('user')} ({resp.get('user_id')}) in {resp.get('team')}"
            )
        ]
        if s.slack_app_token is not None:
            await client.apps_connections_open(app_token=s.slack_app_token.get_secret_value())
            lines.append(ok("Slack: SLACK_APP_TOKEN accepted for Socket Mode"))
    except SlackApiError as exc:
        method = str(exc.response.api_url).rsplit("/", 1)[-1]
        token = "SLACK_APP_TOKEN" if method == "apps.connections.open" else "SLACK_BOT_TOKEN"
        return [error(f"Slack: rejected {token} ({exc.response.get('error')})")]
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return [error(f"Slack: cannot reach {s.slack_api_url} ({_reason(exc)})")]
    return lines


async def check_anthropic(f: Findings) -> list[Line]:
    from bot.llm import make_client

    s = f.settings
    if s.anthropic_api_key is None:
        return [skip("Anthropic: not checked until ANTHROPIC_API_KEY is set")]
    client = make_client(
        s.anthropic_api_key.get_secret_value(), s.anthropic_base_url, max_retries=1
    )
    try:
        page = await client.models.list(limit=5)
    except anthropic.AuthenticationError:
        return [error("Anthropic: rejected ANTHROPIC_API_KEY")]
    except anthropic.APIStatusError as exc:
        return [error(f"Anthropic: answered HTTP {exc.status_code}")]
    except anthropic.APIConnectionError as exc:
        where = s.anthropic_base_url or "api.anthropic.com"
        return [error(f"Anthropic: cannot reach {where} ({_reason(exc.__cause__ or exc)})")]
    finally:
        await client.close()
    return [ok(f"Anthropic: reachable ({', '.join(m.id for m in page.data[:5])})")]


async def check_mcp(f: Findings) -> list[Line]:
    from tools.doctor import describe
    from tools.gateway import McpGateway

    if f.config is None or f.servers is None:
        return [skip("MCP servers: not checked until the files above are fixed")]
    key_problem, box = _token_box(f.settings)
    # The gateway's journal is never written here (no tool is called): an in-memory
    # database stands in, so the operator's database is not touched.
    journal = await open_database(SQLITE_PREFIX + ":memory:")
    await migrate(journal)
    gateway = McpGateway(
        f.servers,
        f.config,
        journal,
        builtin=_builtin(f.settings),
        box=box,
        public_base=lambda: f.settings.public_base(),
    )
    try:
        await gateway.start()
        servers = gateway.servers()
    finally:
        await gateway.stop()
        await journal.close()
    personal = [s.name for s in servers if s.mode == "per-user"]
    counts = await _connected(f.settings) if personal else {}
    lines = []
    for server in servers:
        if server.mode == "per-user":
            server = replace(
                server, connected=None if counts is None else counts.get(server.name, 0)
            )
        header, details = describe(server)
        lines.append(ok(header, details) if server.up else error(header, details))
    if personal and key_problem:
        lines.append(
            error(
                f"COWORKER_SECRET_KEY: {key_problem}; the per-user server(s) "
                f"{', '.join(personal)} need it ({hint('COWORKER_SECRET_KEY')})"
            )
        )
    return lines


def _token_box(settings: Settings) -> tuple[str | None, SecretBox]:
    """What is wrong with `COWORKER_SECRET_KEY`, if anything, and a box to look with (a
    throwaway one when the key is unusable: doctor seals nothing it keeps)."""
    try:
        box = token_box(settings)
    except SettingsError as exc:
        return str(exc).removeprefix("COWORKER_SECRET_KEY ").removeprefix("is "), _looking()
    return (None, box) if box is not None else ("not set", _looking())


def _looking() -> SecretBox:
    return SecretBox([secrets.token_urlsafe(32)], "doctor")


async def _connected(settings: Settings) -> dict[str, int] | None:
    """How many people connected to each per-user server (None: no database to ask yet)."""
    url = settings.database_url
    if url.startswith(SQLITE_PREFIX) and not await asyncio.to_thread(Path(sqlite_path(url)).exists):
        return None
    db = await open_database(url, readonly=True)
    try:
        if "oauth_tokens" not in await db.tables():  # not migrated yet
            return None
        rows = await db.fetchall(
            "SELECT server, COUNT(*) AS people FROM oauth_tokens GROUP BY server"
        )
    finally:
        await db.close()
    return {row["server"]: int(row["people"]) for row in rows}


def _builtin(settings: Settings) -> dict[str, MCPServer]:
    """The built-in servers, to list their tools and tiers (nothing is called)."""
    from handlers.slack_app import make_client
    from tools.builtin.memory import memory_server
    from tools.builtin.slack import slack_server

    async def unused(*args: object) -> str:
        raise CoworkerError("doctor calls no tool")

    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    return {
        "slack": slack_server(make_client(token, settings.slack_api_url)),
        "memory": memory_server(unused, unused),
    }


async def check_memory(f: Findings) -> list[Line]:
    from memory import load_embedder

    if f.config is None:
        return [skip("memory: not checked until coworker.toml is fixed")]
    embedder, warning = load_embedder(f.config.memory, os.environ)
    if warning:
        return [warn(warning)]
    if embedder is None:
        return [ok('memory: keyword-only search (memory.embeddings = "none")')]
    return [ok(f"memory: embeddings by {embedder.name} ({embedder.model})")]


def _reason(exc: BaseException) -> str:
    errno = getattr(exc, "errno", None)
    return os.strerror(errno).lower() if isinstance(errno, int) else type(exc).__name__


CHECKS: list[tuple[str, Check]] = [
    ("settings", check_settings),
    ("config files", check_files),
    ("database", check_database),
    ("Slack", check_slack),
    ("Anthropic", check_anthropic),
    ("MCP servers", check_mcp),
    ("memory", check_memory),
]


async def run_check(name: str, check: Check, findings: Findings) -> list[Line]:
    """One check's lines; its failure is one line, whatever it raised."""
    try:
        return await check(findings)
    except CoworkerError as exc:
        return [error(str(exc))]
    except Exception as exc:  # the edge: one line here, the traceback only in a debug log
        log.debug("doctor: the %s check failed", name, exc_info=True)
        return [
            error(f"{name}: could not be checked ({type(exc).__name__}; LOG_LEVEL=DEBUG shows why)")
        ]


async def doctor() -> int:
    """Run every check, print one line per finding, exit 1 if the bot cannot work."""
    if "LOG_LEVEL" not in os.environ:  # the MCP servers' start-up lines would interleave
        logging.getLogger().setLevel(logging.WARNING)
    settings, problems = read_settings()
    findings = Findings(settings, problems)
    for name, check in CHECKS:
        for line in await run_check(name, check, findings):
            findings.lines.append(line)
            print(line.render(), flush=True)
    errors = sum(1 for line in findings.lines if line.state == "error")
    warnings = sum(1 for line in findings.lines if line.state == "warn")
    print(_summary(errors, warnings))
    return 1 if errors else 0


def _summary(errors: int, warnings: int) -> str:
    if not errors and not warnings:
        return "all checks passed"
    fix = f"{errors} problem(s) to fix" if errors else "nothing to fix"
    return f"{fix}, {warnings} warning(s)" if warnings else fix
