"""`MemoryStore`: episodes and facts in the database, indexed for keywords and vectors.

The rows are plain SQL through the database interface; the indexes are the engine's own
(on SQLite, FTS5 in `memory.keyword_index` and sqlite-vec in `memory.vector_index`).

A memory is one row of `memories`. Its FTS5 entry follows it through triggers (migration
0004); its vector lives in `memory_vec`, written in the same transaction as the row, so the
three never disagree about what exists. Embedding happens before the transaction (it may be
a network call); if it fails the row is stored without a vector, `embedded_by` stays NULL,
and `reembed_all()` fills it in later. Without an embedder everything works on keywords.

Forgetting deletes the row, its FTS5 tokens (secure-delete), its vector and its cached
embedding. Archiving only hides a memory from recall (`memory.decay.restore` undoes it).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from bot.base import clock
from bot.base.config import MemoryConfig
from bot.base.db import Database, Tx, marks
from memory import hubness, retrieval
from memory.embeddings import Embedder
from memory.errors import EmbeddingUnavailable
from memory.keyword_index import KeywordIndex
from memory.records import (
    EXTRA_FIELDS,
    Kind,
    Memory,
    MemoryDraft,
    MemoryScope,
    Scope,
    Status,
    scope_key,
)
from memory.scoring import vector_weight
from memory.vector_index import VectorIndex

log = logging.getLogger(__name__)

# `mmap_size` and `secure_delete = FAST`, which memory relies on, are set on every
# connection in bot/base/db/sqlite.py.

_COLUMNS = (*MemoryDraft.model_fields, "scope_tag", "embedded_by", "created_at", "updated_at")
_UPDATABLE = (
    frozenset({"content", "scope", "project", "user_id", "source_task", "permalink", "importance"})
    | EXTRA_FIELDS
)
_SCOPE_FIELDS = frozenset({"scope", "project", "user_id"})


#: Memories per INSERT statement in `add_many` (SQLite allows 32,766 parameters).
_INSERT_CHUNK = 500
#: memories embedded per call to the model in the background
_EMBED_BATCH = 64
#: how much of a `find()` text the database's LIKE matches (the rest is checked here)
_LIKE_PROBE = 200


class MemoryStore:
    """Episodes and facts: add, change, forget, and recall them within a scope."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder | None,
        config: MemoryConfig,
        *,
        embed_later: bool = False,
    ) -> None:
        """`embed_later`: new and changed memories are stored at once, without a vector, and
        embedded by a background job (the bot: a finished task's runner does not wait for the
        model). Otherwise each write embeds first (the CLI, tests)."""
        self.db = db
        self.config = config
        if db.engine == "postgres":
            from memory.keyword_index_postgres import PostgresKeywordIndex
            from memory.vector_index_postgres import PostgresVectorIndex

            self.vectors: VectorIndex = PostgresVectorIndex(db, embedder)
            self.keywords: KeywordIndex | PostgresKeywordIndex = PostgresKeywordIndex(db)
        else:
            self.vectors = VectorIndex(db, embedder)
            self.keywords = KeywordIndex(db)
        self.embed_later = embed_later
        #: what this process wrote and has yet to embed (`embed_later`)
        self._to_embed: set[int] = set()
        self._embedding: asyncio.Task[None] | None = None

    @property
    def keyword_only(self) -> bool:
        return not self.vectors.ready

    @property
    def vector_weight(self) -> float:
        """The vector search's share of relevance in recall (see `memory.scoring`)."""
        provider = self.vectors.embedder.name if self.vectors.embedder else None
        return vector_weight(provider, self.config.vector_weight)

    async def prepare(self) -> bool:
        """Check or build the vector index; call once at start-up.

        Returns True when some memories lack a vector from the current provider; then run
        `reembed_all()` as a background task.
        """
        await self.vectors.prepare()
        return self.vectors.ready and await self.pending_embeddings() > 0

    # -- writing ---------------------------------------------------------------------------

    async def add(
        self,
        kind: Kind,
        content: str,
        scope: MemoryScope,
        project: str | None = None,
        user_id: str | None = None,
        source_task: int | None = None,
        permalink: str | None = None,
        importance: float = 0.5,
        status: Status = "active",
        **fields: Any,
    ) -> int:
        """Store one memory; `fields` are episode/fact extras (outcome, feedback, sources…)."""
        if unknown := set(fields) - EXTRA_FIELDS:
            raise TypeError(f"unknown memory fields: {', '.join(sorted(unknown))}")
        draft = MemoryDraft(
            kind=kind,
            content=content,
            scope=scope,
            project=project,
            user_id=user_id,
            source_task=source_task,
            permalink=permalink,
            importance=importance,
            status=status,
            **fields,
        )
        (memory_id,) = await self.add_many([draft])
        return memory_id

    async def add_many(
        self,
        drafts: Sequence[MemoryDraft],
        *,
        created_at: Sequence[float] | None = None,
        new_refs_only: bool = False,
    ) -> list[int]:
        """Store several memories and their vectors in one transaction (imports, benchmarks);
        their new ids.

        `created_at` gives each memory its own creation time (an import keeps the source's
        dates). With `new_refs_only`, drafts whose `ref` is stored already are skipped (not
        embedded either), and only the new memories' ids are returned; the check is made again
        inside the transaction, so two imports of one file cannot both add it.
        """
        now = clock.now()
        created = list(created_at) if created_at is not None else [now] * len(drafts)
        if len(created) != len(drafts):
            raise ValueError("created_at needs one time per draft")
        if new_refs_only:
            known = await self.refs_stored([d.ref for d in drafts if d.ref])
            keep = [i for i, d in enumerate(drafts) if d.ref not in known]
            drafts, created = [drafts[i] for i in keep], [created[i] for i in keep]
        blobs = await self._embed_or_none([d.content for d in drafts])
        ids: list[int] = []
        async with self.db.transaction() as tx:
            if new_refs_only:
                await tx.lock("memory:refs")
                known = await self.refs_stored([d.ref for d in drafts if d.ref], tx)
                keep = [i for i, d in enumerate(drafts) if d.ref not in known]
                drafts = [drafts[i] for i in keep]
                blobs, created = [blobs[i] for i in keep], [created[i] for i in keep]
            for start in range(0, len(drafts), _INSERT_CHUNK):
                end = start + _INSERT_CHUNK
                ids += await self._insert(
                    tx, drafts[start:end], blobs[start:end], created[start:end], now
                )
            vectors = [
                (memory_id, blob, draft.kind, draft.scope_key, draft.status)
                for memory_id, draft, blob in zip(ids, drafts, blobs, strict=True)
                if blob is not None
            ]
            if vectors:
                await self.vectors.put_many(tx, vectors)
        self._embed_soon(ids)
        return ids

    async def _insert(
        self,
        tx: Tx,
        drafts: Sequence[MemoryDraft],
        blobs: Sequence[bytes | None],
        created: Sequence[float],
        now: float,
    ) -> list[int]:
        """Insert rows in one statement; their ids in the drafts' order (both engines number
        the rows of one INSERT in the order of its VALUES)."""
        params: list[Any] = []
        for draft, blob, at in zip(drafts, blobs, created, strict=True):
            values = draft.columns() | {
                "embedded_by": self.vectors.signature if blob is not None else None,
                "created_at": at,
                "updated_at": now,
            }
            params += [values[c] for c in _COLUMNS]
        row = f"({marks(len(_COLUMNS))})"
        rows = await tx.fetchall(
            f"INSERT INTO memories ({', '.join(_COLUMNS)}) VALUES"
            f" {', '.join([row] * len(drafts))} RETURNING id",
            params,
        )
        return sorted(r["id"] for r in rows)

    async def refs_stored(self, refs: Sequence[str], tx: Tx | None = None) -> set[str]:
        """Which of `refs` some memory already has (inside `tx` when given)."""
        found: set[str] = set()
        fetchall = tx.fetchall if tx is not None else self.db.fetchall
        for start in range(0, len(refs), 500):
            chunk = list(refs[start : start + 500])
            rows = await fetchall(
                f"SELECT ref FROM memories WHERE ref IN ({marks(len(chunk))})", chunk
            )
            found.update(r["ref"] for r in rows)
        return found

    async def _embed_or_none(self, texts: list[str]) -> list[bytes | None]:
        if not self.vectors.ready:
            return [None] * len(texts)
        if self.embed_later:
            return [None] * len(texts)  # the writer calls `_embed_soon()` once they are stored
        try:
            return list(await self.vectors.embed_documents(texts))
        except EmbeddingUnavailable as exc:
            log.warning(
                "memory: embedding failed (%s); stored for keyword search, re-embedded later", exc
            )
            return [None] * len(texts)

    async def update(self, memory_id: int, **changes: Any) -> Memory | None:
        """Change content, scope, importance or extras; None if there is no such memory."""
        if unknown := set(changes) - _UPDATABLE:
            raise TypeError(f"cannot update: {', '.join(sorted(unknown))}")
        current = await self.get(memory_id)
        if current is None:
            return None
        content = current.draft(**changes).content
        # Embedded before the transaction (a provider call must not hold a lock); the rest
        # is worked out again from the row as it is once locked, so an edit made meanwhile
        # (a move, a status change, here or on another replica) is not undone by this one.
        blob = (await self._embed_or_none([content]))[0] if content != current.content else None
        async with self.db.transaction() as tx:
            await tx.lock(f"memory:{memory_id}")
            row = await tx.fetchone("SELECT * FROM memories WHERE id = ?", (memory_id,))
            if row is None:
                return None
            current = Memory.from_row(row)
            await self._write_update(tx, current, changes, blob)
        if current.draft(**changes).content != current.content:
            self._embed_soon([memory_id])
        return await self.get(memory_id)

    async def _write_update(
        self, tx: Tx, current: Memory, changes: dict[str, Any], blob: bytes | None
    ) -> None:
        """`update()`'s writes, from the memory as read under its lock."""
        draft = current.draft(**changes)
        columns = set(changes) | ({"scope_tag"} if _SCOPE_FIELDS & set(changes) else set())
        values = {k: v for k, v in draft.columns().items() if k in columns}
        values["updated_at"] = clock.now()
        new_content = draft.content != current.content
        if new_content:
            values["embedded_by"] = self.vectors.signature if blob is not None else None
            values["hubness"] = values["hubness_at"] = None  # a new vector, a new neighbourhood
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        await tx.execute(
            f"UPDATE memories SET {assignments} WHERE id = :id", values | {"id": current.id}
        )
        if self.vectors.exists and new_content:
            await self.vectors.delete(tx, current.id)
            if blob is not None:
                await self.vectors.put(
                    tx, current.id, blob, draft.kind, draft.scope_key, current.status
                )
        elif self.vectors.exists and _SCOPE_FIELDS & set(changes):
            await self.vectors.move(tx, current.id, draft.kind, draft.scope_key, current.status)
        if new_content and (old := self.vectors.cache_hash(current.content)):
            await tx.execute("DELETE FROM embedding_cache WHERE hash = ?", (old,))

    async def set_status(
        self,
        memory_id: int,
        status: Status,
        *,
        expected: Status | None = None,
        at: float | None = None,
    ) -> bool:
        """Move a memory to `status` (only from `expected`, if given); True if it changed."""
        now = clock.now() if at is None else at
        sql = "UPDATE memories SET status = ?, archived_at = ?, updated_at = ? WHERE id = ?"
        params: list[Any] = [status, now if status == "archived" else None, now, memory_id]
        if expected is not None:
            sql += " AND status = ?"
            params.append(expected)
        async with self.db.transaction() as tx:
            changed = await tx.execute(sql, params) > 0
            if changed and self.vectors.exists:
                await self.vectors.set_status(tx, memory_id, status)
        return changed

    async def forget(self, memory_id: int, *, status: Status | None = None) -> bool:
        """Delete a memory from the table, FTS5, the vector index and the embedding cache.

        With `status`, only a memory still in that status is deleted (a race-safe reject).
        """
        async with self.db.transaction() as tx:
            # One conditional statement, not a read and then a delete: an approval committed
            # meanwhile on another replica makes the status check fail, not the approval lost.
            row = await tx.fetchone(
                "DELETE FROM memories WHERE id = ?"
                " AND (CAST(? AS TEXT) IS NULL OR status = ?) RETURNING content",
                (memory_id, status, status),
            )
            if row is None:
                return False
            if self.vectors.exists:
                await self.vectors.delete(tx, memory_id)
            if cached := self.vectors.cache_hash(row["content"]):
                await tx.execute("DELETE FROM embedding_cache WHERE hash = ?", (cached,))
        log.info("memory: forgot memory %d", memory_id)
        return True

    async def mark_used(self, memory_ids: Sequence[int]) -> None:
        """Record that these memories went into a task's context (feeds recency and decay)."""
        if not memory_ids:
            return
        await self.db.execute(
            "UPDATE memories SET last_used_at = ?, use_count = use_count + 1"
            f" WHERE id IN ({marks(len(memory_ids))})",
            [clock.now(), *memory_ids],
        )

    # -- embedding in the background -----------------------------------------------------

    async def pending_embeddings(self) -> int:
        """How many memories lack a vector from the current provider."""
        if not self.vectors.ready:
            return 0
        return int(
            await self.db.fetchval(
                "SELECT count(*) FROM memories WHERE embedded_by IS DISTINCT FROM ?",
                (self.vectors.signature,),
            )
        )

    def _embed_soon(self, memory_ids: Sequence[int]) -> None:
        """Have this process's background job embed what it just wrote (`embed_later`): each
        replica embeds its own writes, on its own cores, so the work grows with the replicas.
        One job at a time; what is written while it runs joins its queue."""
        if not (self.embed_later and self.vectors.ready and memory_ids):
            return
        self._to_embed.update(memory_ids)
        if self._embedding is None or self._embedding.done():
            self._embedding = asyncio.create_task(self._embed_written(), name="memory-embed")

    async def _embed_written(self) -> None:
        while self._to_embed:
            batch = sorted(self._to_embed)[:_EMBED_BATCH]
            self._to_embed.difference_update(batch)
            rows = await self.db.fetchall(
                f"SELECT id, content FROM memories WHERE id IN ({marks(len(batch))})"
                " AND embedded_by IS DISTINCT FROM ?",
                [*batch, self.vectors.signature],
            )
            try:
                await self._embed_rows(rows)
            except Exception as exc:
                # Kept for the next write's job to try again (and, with replicas, the leader's
                # sweep takes them if this replica stops first).
                self._to_embed.update(batch)
                if isinstance(exc, EmbeddingUnavailable):
                    log.warning("memory: background embedding stopped: %s", exc)
                else:  # e.g. the database went away
                    log.exception("memory: background embedding failed")
                return

    async def close(self) -> None:
        """Stop background embedding (the next start finishes it) and the embedder."""
        if self._embedding is not None and not self._embedding.done():
            self._embedding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._embedding
        embedder = self.vectors.embedder
        if (aclose := getattr(embedder, "aclose", None)) is not None:
            await aclose()
        elif (close := getattr(embedder, "close", None)) is not None:
            close()

    async def reembed_all(self, batch: int = _EMBED_BATCH, settled_for: float = 0.0) -> int:
        """Embed every memory the current provider has not; return how many were done.

        `settled_for`: only memories unchanged for that many seconds (the periodic sweep
        leaves fresh ones to the process that wrote them, which is embedding them).
        Safe to run while the bot works: each batch is its own short transaction, and a row
        edited or forgotten meanwhile is skipped. Stops early (and logs) if the provider fails;
        the next start-up picks up where it left off.
        """
        done, last_id = 0, 0
        settled = " AND updated_at <= ?" if settled_for > 0 else ""
        while self.vectors.ready:
            before = [clock.now() - settled_for] if settled_for > 0 else []
            rows = await self.db.fetchall(
                "SELECT id, content FROM memories WHERE id > ? AND embedded_by IS DISTINCT FROM ?"
                f"{settled} ORDER BY id LIMIT ?",
                [last_id, self.vectors.signature, *before, batch],
            )
            if not rows:
                break
            last_id = rows[-1]["id"]
            try:
                done += await self._embed_rows(rows)
            except EmbeddingUnavailable as exc:
                log.warning("memory: re-embedding stopped after %d memories: %s", done, exc)
                break
            await asyncio.sleep(0)
        if done:
            log.info("memory: re-embedded %d memories with %s", done, self.vectors.signature)
        return done

    async def refresh_hubness(self, *, limit: int | None = hubness.BATCH) -> int:
        """Work out the hubness terms missing, then the oldest, at most `limit` (None: all);
        how many were written (`memory.hubness`)."""
        return await hubness.refresh(self, limit=limit)

    async def _embed_rows(self, rows: Sequence[Any]) -> int:
        """Embed (id, content) rows and store their vectors; how many were stored."""
        if not rows:
            return 0
        blobs = await self.vectors.embed_documents([r["content"] for r in rows], background=True)
        return await self._store_vectors(rows, blobs)

    async def _store_vectors(self, rows: Sequence[Any], blobs: Sequence[bytes]) -> int:
        stored = 0
        async with self.db.transaction() as tx:
            for row, blob in zip(rows, blobs, strict=True):
                now = await tx.fetchone(
                    "SELECT kind, scope, project, user_id, status, content FROM memories"
                    " WHERE id = ?",
                    (row["id"],),
                )
                if now is None or now["content"] != row["content"]:
                    continue
                key = scope_key(now["scope"], now["project"], now["user_id"])
                await self.vectors.delete(tx, row["id"])
                await self.vectors.put(tx, row["id"], blob, now["kind"], key, now["status"])
                await tx.execute(
                    "UPDATE memories SET embedded_by = ?, hubness = NULL, hubness_at = NULL"
                    " WHERE id = ?",
                    (self.vectors.signature, row["id"]),
                )
                stored += 1
        return stored

    # -- reading ---------------------------------------------------------------------------

    async def get(self, memory_id: int) -> Memory | None:
        row = await self.db.fetchone("SELECT * FROM memories WHERE id = ?", (memory_id,))
        return None if row is None else Memory.from_row(row)

    async def get_many(self, memory_ids: Sequence[int]) -> dict[int, Memory]:
        if not memory_ids:
            return {}
        rows = await self.db.fetchall(
            f"SELECT * FROM memories WHERE id IN ({marks(len(memory_ids))})", list(memory_ids)
        )
        return {r["id"]: Memory.from_row(r) for r in rows}

    async def recall(
        self, query: str, scope: Scope, *, kind: Kind | None = None, k: int = 10
    ) -> builtins.list[Memory]:
        """The `k` active memories most relevant to `query` that `scope` may see."""
        return await retrieval.recall(self, query, scope, kind=kind, k=k)

    async def retrieve_for_task(self, request: str, scope: Scope) -> retrieval.RecalledContext:
        """Episodes and facts for a new task, rendered within the token budget; marks them used."""
        return await retrieval.retrieve_for_task(self, request, scope)

    async def find(self, text: str, scope: Scope, *, limit: int = 10) -> builtins.list[Memory]:
        """Memories `scope` may see that contain `text`, or all its words (for forget)."""
        needle = text.strip()
        if not needle:
            return []
        # The database matches the text's start (a LIKE pattern's cost grows with its length,
        # and SQLite refuses one over 50 kB); a longer text is then checked here in full.
        probe = needle[:_LIKE_PROBE]
        where, params = scope.sql("m")
        rows = await self.db.fetchall(
            f"SELECT m.* FROM memories m WHERE {where}"
            " AND lower(m.content) LIKE '%' || lower(CAST(? AS TEXT)) || '%' ESCAPE '\\'"
            " ORDER BY m.created_at DESC LIMIT ?",
            [*params, _like_escaped(probe), limit if probe == needle else limit * 10],
        )
        whole = needle.lower()
        found = {
            r["id"]: Memory.from_row(r)
            for r in rows
            if probe == needle or whole in str(r["content"]).lower()
        }
        if len(found) < limit:
            ids = await self.keywords.containing_all(text, scope, limit)
            more = await self.get_many([i for i in ids if i not in found])
            for memory_id in ids:
                if memory_id in more:
                    found.setdefault(memory_id, more[memory_id])
        return builtins.list(found.values())[:limit]

    async def list(
        self,
        scope: Scope | None = None,
        *,
        kind: Kind | None = None,
        status: Status = "active",
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[Memory]:
        """Memories by newest first; `scope=None` lists every scope (admins, App Home)."""
        where: builtins.list[str] = ["m.status = ?"]
        params: builtins.list[Any] = [status]
        if scope is not None:
            clause, scope_params = scope.sql("m")
            where.append(clause)
            params += scope_params
        if kind is not None:
            where.append("m.kind = ?")
            params.append(kind)
        rows = await self.db.fetchall(
            f"SELECT m.* FROM memories m WHERE {' AND '.join(where)}"
            " ORDER BY m.created_at DESC, m.id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [Memory.from_row(r) for r in rows]


def _like_escaped(text: str) -> str:
    """`text` matched literally by LIKE … ESCAPE '\\' (its `%`, `_` and `\\` escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
