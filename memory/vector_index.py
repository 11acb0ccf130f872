"""The vector side of memory on SQLite: the vec0 table, the provider it was built with, the cache.

This module and `memory.keyword_index` are SQLite's memory search: sqlite-vec SQL lives here
and nowhere else, and it reaches the database through the common interface. The store
writes vectors through `put_many`, `delete`, `set_status` and `move`.

`memory_vec` is a sqlite-vec vec0 table whose dimension depends on the embeddings provider,
so it is created here at start-up rather than in a migration (the one exception to "no
CREATE outside migrations/"). `memory_meta` records which provider built it; when the
provider, model or dimension changes, the table is recreated empty and every memory is
re-embedded in the background (`MemoryStore.reembed_all()`), so vectors of different models
never mix. Until that finishes, recall still works on keywords for the rows not yet done.

Scope filters apply inside the KNN scan, so `k` rows come back however few memories are in
scope (a WHERE on a joined table would filter after the scan and silently return fewer):
the table is partitioned by `shard` (see `memory.records`) and kind, a scoped search runs
one KNN per visible shard and merges them by distance, and scope id and status are metadata
columns filtered during each scan. Partitioning matters for speed: vec0 reads every vector
chunk of the partitions it scans, whatever the metadata filters say.

Vectors are L2-normalised before they are stored, so vec0's default L2 distance ranks like
cosine and `cosine = 1 - d² / 2`.

Recall searches with the query minus the mean of the stored vectors (`centred`). Embedding
models put every text in a narrow cone (the built-in model's cosines between unrelated texts
are 0.7-0.85), so the raw cosine favours "hub" memories that are close to everything
("Thanks, see you tomorrow!"). Against a unit vector d, (q - mean)·d = q·d - mean·d: each
memory's similarity to the query minus its average similarity to all memories, which is the
hubness correction of cross-domain similarity local scaling (Conneau et al., 2018) and the
centring of "all-but-the-top" (Mu and Viswanath, 2018). Stored vectors stay as they are: only
the query moves, and an L2 KNN with an unnormalised query still ranks by that dot product
(|q' - d|² = |q'|² + 1 - 2 q'·d). The mean is taken over at most `MEAN_SAMPLE` vectors and
kept for `MEAN_TTL` seconds or until this process has written a tenth as many again; it is an
average over the whole index, so it says nothing about any one memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import struct
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from bot.base.db import Database, Tx, marks
from memory.embeddings import Embedder, l2_normalised
from memory.errors import EmbeddingUnavailable
from memory.records import Kind, Scope, Status, scope_id, shard

log = logging.getLogger(__name__)

TABLE = "memory_vec"
META_KEY = "vector_index"
LAYOUT = 1  # bump when the vec0 columns change: the table is rebuilt and re-embedded
MAX_K = 4096  # vec0's limit on k
CHUNK_SIZE = 128  # vectors per chunk; each partition reserves at least one chunk
_QUERY_CACHE = 256
#: How many stored vectors the mean that queries are centred on is taken over, and for how
#: long it is kept (see the module docstring).
MEAN_SAMPLE = 2048
MEAN_TTL = 600.0
#: A task start waits at most this long for its query embedding, then goes keyword-only.
QUERY_TIMEOUT = 10.0
PAUSE_AFTER_FAILURE = 60.0

INSERT_SQL = (
    f"INSERT INTO {TABLE} (memory_id, embedding, shard, scope_id, kind, status)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
DELETE_SQL = f"DELETE FROM {TABLE} WHERE memory_id = ?"
STATUS_SQL = f"UPDATE {TABLE} SET status = ? WHERE memory_id = ?"


def vector_row(
    memory_id: int, blob: bytes, kind: str, key: str, status: str
) -> tuple[int, bytes, int, int, str, str]:
    """INSERT_SQL parameters for a memory with scope key `key`."""
    return (memory_id, blob, shard(key), scope_id(key), kind, status)


def to_blob(vector: list[float]) -> bytes:
    """A float32 blob of the L2-normalised vector, as vec0 stores it."""
    return struct.pack(f"{len(vector)}f", *l2_normalised(vector))


def cosine(distance: float) -> float:
    return 1.0 - distance * distance / 2.0


def _hash(provider: str, text: str) -> str:
    return hashlib.sha256(f"{provider}\0{text}".encode()).hexdigest()


class VectorIndex:
    """The vec0 table and embedding cache for one provider; inert without an embedder."""

    def __init__(self, db: Database, embedder: Embedder | None) -> None:
        self.db = db
        self.embedder = embedder
        #: memory_vec exists (possibly built by another provider): deletes must reach it
        self.exists = False
        #: memory_vec matches the embedder: vectors may be searched and written
        self.ready = False
        #: "provider:model:dim" written into memories.embedded_by
        self.signature: str | None = None
        #: why vectors are off although an embedder is configured (for `doctor`)
        self.problem: str | None = None
        self._cache_provider: str | None = None
        self._queries: OrderedDict[str, bytes] = OrderedDict()
        self._paused_until = 0.0
        #: vectors written by this process, and the mean with the count, time and writes it had
        self._writes = 0
        self._mean: tuple[list[float] | None, int, float, int] | None = None

    async def prepare(self) -> bool:
        """Check or (re)build memory_vec for the embedder; True if it was rebuilt."""
        self.exists = await self._table_exists()
        meta = await self.db.fetchval("SELECT value FROM memory_meta WHERE key = ?", (META_KEY,))
        recorded = json.loads(meta) if meta else None
        if recorded:
            self._cache_provider = f"{recorded['provider']}:{recorded['model']}"
        if self.embedder is None:
            return False
        try:
            # Also loads a local model, and finds a wrong key or URL now, not at the first task.
            dim = len((await self.embedder.embed(["dimension probe"]))[0])
        except EmbeddingUnavailable as exc:
            self.problem = str(exc)
            log.warning("memory: %s; recall is keyword-only until restart", exc)
            return False
        wanted = {
            "provider": self.embedder.name,
            "model": self.embedder.model,
            "dim": dim,
            "layout": LAYOUT,
        }
        self.signature = f"{wanted['provider']}:{wanted['model']}:{dim}"
        self._cache_provider = f"{wanted['provider']}:{wanted['model']}"
        rebuilt = recorded != wanted or not self.exists
        if rebuilt:
            await self._rebuild(wanted)
            log.info(
                "memory: vector index built for %s; re-embedding in the background", self.signature
            )
        self.exists = self.ready = True
        return rebuilt

    async def _table_exists(self) -> bool:
        return TABLE in await self.db.tables()

    async def _rebuild(self, wanted: dict[str, Any]) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(f"DROP TABLE IF EXISTS {TABLE}")
            self._mean = None
            # Created in code, not a migration: the dimension is the provider's.
            await tx.execute(
                f"CREATE VIRTUAL TABLE {TABLE} USING vec0("
                " memory_id INTEGER PRIMARY KEY,"
                f" embedding FLOAT[{int(wanted['dim'])}],"
                " shard INTEGER PARTITION KEY,"
                " kind TEXT PARTITION KEY,"
                " scope_id INTEGER,"
                " status TEXT,"
                f" chunk_size = {CHUNK_SIZE})"
            )
            await tx.execute(
                "INSERT INTO memory_meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (META_KEY, json.dumps(wanted)),
            )
            # Vectors of another model are useless now, and forget() could not find them.
            await tx.execute(
                "DELETE FROM embedding_cache WHERE provider != ?", (self._cache_provider,)
            )

    def cache_hash(self, text: str) -> str | None:
        """The embedding_cache key of `text` for the provider that built the index."""
        return _hash(self._cache_provider, text) if self._cache_provider else None

    def _pause(self, exc: BaseException) -> None:
        """After a failure, skip the provider for a while rather than make every task wait."""
        self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
        log.warning(
            "memory: embeddings failed (%s); keyword-only for %.0f s",
            exc or type(exc).__name__,
            PAUSE_AFTER_FAILURE,
        )

    @property
    def paused(self) -> bool:
        return time.monotonic() < self._paused_until

    async def embed_documents(self, texts: list[str], *, background: bool = False) -> list[bytes]:
        """Normalised float32 blobs for `texts`, from the cache where possible.

        After a recent failure the provider is not called (unless `background`, for the
        re-embedding job, which may wait for it).

        Raises:
            EmbeddingUnavailable: the provider failed (the caller stores without a vector).
        """
        if self.embedder is None or not self.ready:
            raise EmbeddingUnavailable("no embeddings provider", provider="none")
        assert self._cache_provider is not None
        hashes = [_hash(self._cache_provider, t) for t in texts]
        found = await self._cached(hashes)
        missing = [i for i, h in enumerate(hashes) if h not in found]
        if missing:
            if self.paused and not background:
                raise EmbeddingUnavailable("paused after a failure", provider=self.embedder.name)
            try:
                vectors = await self.embedder.embed([texts[i] for i in missing])
            except EmbeddingUnavailable as exc:
                self._pause(exc)
                raise
            now = time.time()
            rows = []
            for i, vector in zip(missing, vectors, strict=True):
                found[hashes[i]] = to_blob(vector)
                rows.append((hashes[i], self._cache_provider, len(vector), found[hashes[i]], now))
            async with self.db.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO embedding_cache (hash, provider, dim, vector, created_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    rows,
                )
        return [found[h] for h in hashes]

    async def _cached(self, hashes: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            rows = await self.db.fetchall(
                f"SELECT hash, vector FROM embedding_cache WHERE hash IN ({marks(len(chunk))})",
                chunk,
            )
            found.update({r["hash"]: r["vector"] for r in rows})
        return found

    async def embed_query(self, text: str) -> bytes | None:
        """The query's blob, or None (keyword-only) when there is no provider or it failed."""
        if self.embedder is None or not self.ready:
            return None
        if (blob := self._queries.get(text)) is not None:
            self._queries.move_to_end(text)
            return blob
        if self.paused:
            return None
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                (vector,) = await self.embedder.embed([text], query=True)
        except (EmbeddingUnavailable, TimeoutError) as exc:
            self._pause(exc)
            return None
        blob = self._queries[text] = to_blob(vector)
        if len(self._queries) > _QUERY_CACHE:
            self._queries.popitem(last=False)
        return blob

    async def centred(self, blob: bytes) -> bytes:
        """A query's blob minus the mean of the stored vectors, for `nearest` (not normalised:
        that would not change the ranking); the blob itself while nothing is stored."""
        mean = await self.mean()
        if mean is None:
            return blob
        query = array("f", blob)
        if len(query) != len(mean):
            return blob
        return array("f", [q - m for q, m in zip(query, mean, strict=True)]).tobytes()

    async def stored(self, memory_ids: Sequence[int]) -> dict[int, bytes]:
        """The stored vectors (normalised float32 blobs) of those of `memory_ids` that have one."""
        found: dict[int, bytes] = {}
        for start in range(0, len(memory_ids), 500):
            chunk = list(memory_ids[start : start + 500])
            rows = await self.db.fetchall(
                f"SELECT memory_id, embedding FROM {TABLE} WHERE memory_id IN ({marks(len(chunk))})",
                chunk,
            )
            found.update({int(r["memory_id"]): bytes(r["embedding"]) for r in rows})
        return found

    def dot_products(
        self, hits: Sequence[tuple[int, float]], blob: bytes
    ) -> list[tuple[int, float]]:
        """`nearest(blob, ...)`'s hits as dot products of `blob` with each memory's vector.
        vec0 ranks by L2 distance: cosine(d) = 1 - (|q|² + 1 - 2 q·v) / 2."""
        norm2 = math.fsum(x * x for x in array("f", blob))
        return [(memory_id, s - (1.0 - norm2) / 2.0) for memory_id, s in hits]

    async def mean(self) -> list[float] | None:
        """The mean stored vector that queries are centred on (None while none is stored)."""
        if self._mean is not None:
            mean, count, at, writes = self._mean
            fresh = time.monotonic() - at < MEAN_TTL
            # An empty index is looked at again: its first vectors may come from elsewhere.
            if fresh and count and (self._writes - writes) * 10 <= count:
                return mean
        mean, count = await self._sample_mean()
        self._mean = (mean, count, time.monotonic(), self._writes)
        return mean

    async def _sample_mean(self) -> tuple[list[float] | None, int]:
        """The mean of up to `MEAN_SAMPLE` stored vectors, and how many it was taken over."""
        rows = await self.db.fetchall(f"SELECT embedding FROM {TABLE} LIMIT ?", (MEAN_SAMPLE,))
        vectors = [array("f", r["embedding"]) for r in rows]
        columns = zip(*vectors, strict=True)
        mean = [math.fsum(column) / len(vectors) for column in columns] if vectors else None
        return mean, len(vectors)

    async def nearest(
        self,
        blob: bytes,
        k: int,
        *,
        scope: Scope,
        kind: Kind | None = None,
        statuses: tuple[Status, ...] = ("active",),
    ) -> list[tuple[int, float]]:
        """(memory id, cosine similarity) of the `k` nearest memories `scope` may see: one
        KNN per visible shard (in one round trip), merged by distance."""
        if not self.ready or k <= 0:
            return []
        sql = (
            f"SELECT memory_id, distance FROM {TABLE} WHERE embedding MATCH ? AND k = ?"
            " AND shard = ? AND scope_id = ?"
            f" AND status IN ({marks(len(statuses))})"
        )
        if kind is not None:
            sql += " AND kind = ?"
        searches = []
        for key in scope.keys():
            params: list[Any] = [blob, min(k, MAX_K), shard(key), scope_id(key), *statuses]
            if kind is not None:
                params.append(kind)
            searches.append((sql, params))
        found = [
            (r["memory_id"], r["distance"])
            for rows in await self.db.batch(*searches)
            if isinstance(rows, list)
            for r in rows
        ]
        found.sort(key=lambda hit: hit[1])
        return [(memory_id, cosine(d)) for memory_id, d in found[:k] if not math.isnan(d)]

    async def put_many(self, tx: Tx, rows: Sequence[tuple[int, bytes, str, str, str]]) -> None:
        """Store vectors: (memory id, blob, kind, scope key, status) each."""
        await tx.executemany(INSERT_SQL, [vector_row(*row) for row in rows])
        self._writes += len(rows)

    async def put(
        self, tx: Tx, memory_id: int, blob: bytes, kind: str, key: str, status: str
    ) -> None:
        await tx.execute(INSERT_SQL, vector_row(memory_id, blob, kind, key, status))
        self._writes += 1

    async def delete(self, tx: Tx, memory_id: int) -> None:
        await tx.execute(DELETE_SQL, (memory_id,))
        self._writes += 1

    async def set_status(self, tx: Tx, memory_id: int, status: str) -> None:
        await tx.execute(STATUS_SQL, (status, memory_id))

    async def move(self, tx: Tx, memory_id: int, kind: str, key: str, status: str) -> None:
        """Re-file a memory's vector under a new scope (vec0 cannot update a partition key)."""
        row = await tx.fetchone(f"SELECT embedding FROM {TABLE} WHERE memory_id = ?", (memory_id,))
        if row is not None:
            await tx.execute(DELETE_SQL, (memory_id,))
            await tx.execute(INSERT_SQL, vector_row(memory_id, row["embedding"], kind, key, status))
