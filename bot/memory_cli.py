"""`python -m bot memory import FILE…` and `python -m bot memory search QUERY`.

The operator's way to load what a team already knows (records exported from elsewhere, team
docs, onboarding notes, decision records) and to see what recall finds for a question. Both
open the database and the configured embeddings provider and nothing else: no Slack, no MCP
server, no Anthropic API. Searching marks nothing as used (only a task's retrieval does), so
it never keeps a memory from fading. `benchmarks/memory_quality.py` measures recall through
the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.base.config import load_config
from bot.base.db import open_database
from bot.base.migrations import migrate
from bot.base.settings import Settings
from memory.embeddings import load_embedder
from memory.errors import FileRejected
from memory.importing import (
    parse_scope,
    parse_time,
    prepare_file,
    search_scope,
    store_file,
)
from memory.records import Memory, Scope
from memory.retrieval import recall
from memory.store import MemoryStore


def add_parsers(actions: Any) -> None:
    """The `memory import` and `memory search` entries of `python -m bot`'s parser."""
    imp = actions.add_parser(
        "import",
        help="add memories from JSON Lines records or Markdown/text documents",
        description="JSON Lines (.jsonl) files hold records {text, kind, scope, created_at, "
        "ref, context}; any other file is a document, cut into facts that wait in the review queue. "
        "A file with a bad line is reported by line number and nothing is imported; "
        "importing a file again adds only what is new.",
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE", help="files to import")
    imp.add_argument(
        "--scope",
        default="team",
        type=_scope,
        help="scope of the facts cut from documents: team, project:NAME or user:UID "
        "(default: team; JSON Lines records carry their own)",
    )
    imp.add_argument(
        "--approve",
        action="store_true",
        help="make imported facts active at once instead of waiting for review",
    )
    search = actions.add_parser(
        "search",
        help="show what memory recall finds for a query",
        description="Hybrid recall, as a task's memory retrieval runs it; marks nothing used.",
    )
    which = search.add_mutually_exclusive_group(required=True)
    which.add_argument("query", nargs="?", help="what to search for")
    which.add_argument(
        "--queries",
        type=Path,
        metavar="FILE.jsonl",
        help='many searches: one {"query", "scope"?, "at"?} per line',
    )
    search.add_argument(
        "--scope",
        action="append",
        type=_scope,
        default=[],
        help="who is asking: project:NAME and/or user:UID, repeatable (the team's memories "
        "are always visible; default: the team's only)",
    )
    search.add_argument("--k", type=_positive, default=10, help="how many results (default 10)")
    search.add_argument(
        "--at",
        type=_moment,
        help="the moment freshness is measured from, ISO 8601 or epoch seconds (default now)",
    )
    search.add_argument("--json", action="store_true", help="print JSON (one line per query)")


def _scope(text: str) -> str:
    try:
        parse_scope(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _moment(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """`memory import` or `memory search`."""
    if args.action == "import":
        # Every file is read and checked before anything is stored.
        prepared = [
            prepare_file(path, scope=args.scope, approve=args.approve) for path in args.files
        ]
        async with open_store(settings) as store:
            for result in [await store_file(store, p) for p in prepared]:
                print(result.summary())
            # Their neighbourhoods, and their neighbours', now hold them (`memory.hubness`).
            await store.refresh_hubness(limit=None)
        return 0
    searches = (
        _read_queries(args.queries) if args.queries else [Search(args.query, args.scope, args.at)]
    )
    async with open_store(settings) as store:
        for item in searches:
            hits = await search(store, item.query, search_scope(item.scopes), k=args.k, at=item.at)
            _print(item.query, hits, sys.stdout, as_json=args.json)
    return 0


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[MemoryStore]:
    """The memory store over the migrated database, with the configured embeddings."""
    config = load_config(settings.coworker_config, required=settings.named("coworker_config"))
    embedder, warning = load_embedder(config.memory, os.environ)
    if warning:
        print(warning, file=sys.stderr)
    db = await open_database(settings.database_url)
    store = MemoryStore(db, embedder, config.memory)
    try:
        await migrate(db)
        await store.prepare()
        if missing := await store.pending_embeddings():
            print(
                f"memory: {missing} memories have no vector from {store.vectors.signature} yet "
                "(the bot adds them in the background); search finds them by keywords",
                file=sys.stderr,
            )
        yield store
    finally:
        await store.close()
        await db.close()


async def search(
    store: MemoryStore, query: str, scope: Scope, *, k: int = 10, at: float | None = None
) -> list[Memory]:
    """What recall finds for `query`, as a task in `scope` would see it; marks nothing used."""
    return await recall(store, query, scope, k=k, at=at)


@dataclass(frozen=True)
class Search:
    query: str
    scopes: list[str]
    at: float | None


class _QueryLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    scope: str | list[str] = []
    at: float | str | None = None


def _read_queries(path: Path) -> list[Search]:
    """The searches of a `--queries` file; a bad line is reported by number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileRejected(path=path, line=None, reason=f"cannot be read ({exc})") from None
    searches = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = _QueryLine.model_validate(json.loads(line))
            scopes = [item.scope] if isinstance(item.scope, str) else item.scope
            for scope in scopes:
                parse_scope(scope)
            at = parse_time(item.at) if item.at is not None else None
        except json.JSONDecodeError as exc:
            raise FileRejected(path=path, line=number, reason=f"not JSON ({exc.msg})") from None
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            raise FileRejected(
                path=path, line=number, reason=f'"{field}": {error["msg"]}'
            ) from None
        except ValueError as exc:
            raise FileRejected(path=path, line=number, reason=str(exc)) from None
        searches.append(Search(item.query, scopes, at))
    return searches


def hit_json(memory: Memory) -> dict[str, Any]:
    """One search result as the JSON output shows it."""
    return {
        "ref": memory.ref,
        "id": memory.id,
        "kind": memory.kind,
        "scope": memory.scope_key,
        "score": round(memory.score or 0.0, 4),
        "created_at": _iso(memory.created_at),
        "text": memory.content,
        "context": memory.context,
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _print(query: str, hits: list[Memory], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"query": query, "hits": [hit_json(m) for m in hits]}), file=out)
        return
    print(f"{query}: {len(hits)} result(s)" if hits else f"{query}: nothing found", file=out)
    for rank, memory in enumerate(hits, start=1):
        ref = f"  ref {memory.ref}" if memory.ref else ""
        print(
            f"{rank:>3}. {memory.score or 0:.3f}  {memory.kind} {memory.id}  {memory.scope_key}"
            f"  {_iso(memory.created_at)[:10]}{ref}",
            file=out,
        )
        if memory.context:
            after = " ".join(memory.context.split())
            print(f"     (after: {after[:100]}{'…' if len(after) > 100 else ''})", file=out)
        text = " ".join(memory.content.split())
        print(f"     {text[:200]}{'…' if len(text) > 200 else ''}", file=out)
