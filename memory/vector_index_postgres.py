"""The vector side of memory on PostgreSQL: a pgvector table with an HNSW index (cosine).

Embedding, the embedding cache and the provider bookkeeping are the engine-neutral parts of
`memory.vector_index.VectorIndex`; this subclass keeps the vectors in `memory_vectors`
instead of a vec0 table. Its dimension is the provider's, so, as on SQLite, the table is
created here at start-up (the one CREATE outside migrations) and rebuilt empty when the
provider, model or dimension changes; `memory_meta` records which built it. Replicas
starting together rebuild it once: the rebuild holds an advisory lock and looks again.

Scope, kind and status are columns of the vector table, filtered inside the search, so
nothing outside the scope is read back and a narrow scope still gets `k` rows. Which
search depends on how many vectors the scope may see (each scope's count kept for a minute):
up to `EXACT_MAX`, an exact scan of
just those rows ranks them all, which is both exact and faster than walking a graph built
over everyone's memories. It reads them from the (scope, kind, status) B-tree, which also
carries the id and the vector (`INCLUDE`), so a scope's vectors sit together and the scan
never visits the table (an index-only scan: a few hundred pages instead of thousands, about
3x faster at 100k memories); a vector too large for a B-tree entry (more than
`COVER_MAX_DIM` dimensions) is read from the table instead. Beyond `EXACT_MAX`, the
HNSW index with pgvector's iterative scan (`hnsw.iterative_scan`), which walks the graph
further until `k` rows pass the filter. A row references its memory with ON DELETE
CASCADE, so forgetting a memory removes its vector even if a caller forgot to.

Vectors are stored as `halfvec` (16-bit floats): half the bytes to read per candidate, and
cosine ranks within 1e-3 of 32-bit floats. They are L2-normalised (as the blobs are), and
`<=>` is cosine distance, so similarity is `1 - distance`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from array import array
from collections.abc import Sequence
from typing import Any

from bot.base.db import Database, Tx
from memory.embeddings import Embedder
from memory.records import Kind, Scope, Status, scope_id
from memory.vector_index import MAX_K, MEAN_SAMPLE, VectorIndex

log = logging.getLogger(__name__)

TABLE = "memory_vectors"
#: advisory lock key held while (re)building the table ("cwvector")
REBUILD_LOCK = 0x6377766563746F73
#: a scope that sees at most this many vectors is searched exactly
EXACT_MAX = 20_000
#: the largest dimension whose 16-bit vector fits in a B-tree entry (~2.7 kB) with room
COVER_MAX_DIM = 1200
#: candidates the HNSW search keeps per step; more is slower and closer to exact
EF_SEARCH = 100
#: how far an iterative scan may walk before it gives up on filling `k`
MAX_SCAN_TUPLES = 40_000
#: seconds a scope's vector count is trusted before it is counted again
SIZE_TTL = 60.0
_MAX_SIZES = 50_000

PUT_SQL = (
    f"INSERT INTO {TABLE} (memory_id, embedding, scope_id, kind, status)"
    " VALUES (?, CAST(? AS halfvec), ?, ?, ?) ON CONFLICT (memory_id) DO UPDATE SET"
    " embedding = excluded.embedding, scope_id = excluded.scope_id,"
    " kind = excluded.kind, status = excluded.status"
)


def to_vector(blob: bytes) -> Any:
    """A pgvector `Vector` from the float32 blob `VectorIndex` makes."""
    from pgvector import Vector

    floats = array("f")
    floats.frombytes(blob)
    return Vector(floats.tolist())


class PostgresVectorIndex(VectorIndex):
    """`memory_vectors` with an HNSW index, for one embeddings provider."""

    def __init__(
        self, db: Database, embedder: Embedder | None, *, exact_max: int = EXACT_MAX
    ) -> None:
        super().__init__(db, embedder)
        self.exact_max = exact_max
        self._sizes: dict[tuple[int, Kind | None, tuple[Status, ...]], tuple[int, float]] = {}

    async def _table_exists(self) -> bool:
        return bool(await self.db.fetchval(f"SELECT to_regclass('{TABLE}') IS NOT NULL"))

    async def _rebuild(self, wanted: dict[str, Any]) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock(?)", (REBUILD_LOCK,))
            meta = await tx.fetchval("SELECT value FROM memory_meta WHERE key = 'vector_index'")
            exists = await tx.fetchval(f"SELECT to_regclass('{TABLE}') IS NOT NULL")
            if exists and meta and json.loads(meta) == wanted:
                return  # another replica built it a moment ago
            await tx.execute(f"DROP TABLE IF EXISTS {TABLE}")
            # Created in code, not a migration: the dimension is the provider's.
            await tx.execute(
                f"CREATE TABLE {TABLE} ("
                " memory_id BIGINT PRIMARY KEY REFERENCES memories(id) ON DELETE CASCADE,"
                f" embedding halfvec({int(wanted['dim'])}) NOT NULL,"
                " scope_id BIGINT NOT NULL,"
                " kind TEXT NOT NULL,"
                " status TEXT NOT NULL)"
            )
            await tx.execute(
                f"CREATE INDEX {TABLE}_hnsw ON {TABLE} USING hnsw (embedding halfvec_cosine_ops)"
            )
            cover = " INCLUDE (memory_id, embedding)" if wanted["dim"] <= COVER_MAX_DIM else ""
            await tx.execute(
                f"CREATE INDEX {TABLE}_scope ON {TABLE} (scope_id, kind, status){cover}"
            )
            await tx.execute(
                "INSERT INTO memory_meta (key, value) VALUES ('vector_index', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (json.dumps(wanted),),
            )
            # Vectors of another model are useless now, and forget() could not find them.
            await tx.execute(
                "DELETE FROM embedding_cache WHERE provider != ?", (self._cache_provider,)
            )

    async def nearest(
        self,
        blob: bytes,
        k: int,
        *,
        scope: Scope,
        kind: Kind | None = None,
        statuses: tuple[Status, ...] = ("active",),
    ) -> list[tuple[int, float]]:
        """(memory id, cosine similarity) of the `k` nearest memories `scope` may see."""
        if not self.ready or k <= 0:
            return []
        k = min(k, MAX_K)
        where = "scope_id = ANY(?) AND status = ANY(?)"
        params: list[Any] = [scope.ids(), list(statuses)]
        if kind is not None:
            where += " AND kind = ?"
            params.append(kind)
        exact = await self._visible(scope.ids(), kind, statuses) <= self.exact_max
        distance = f"SELECT memory_id, embedding <=> CAST(? AS halfvec) AS distance FROM {TABLE}"
        if exact:
            # Rank every visible vector: OFFSET 0 keeps the ORDER BY out of the scan, so the
            # graph is not used; the B-tree's entries are, when they hold the vectors.
            settings = {"enable_bitmapscan": "off", "enable_seqscan": "off"} if self.covered else {}
            sql = f"SELECT * FROM ({distance} WHERE {where} OFFSET 0) s"
        else:
            settings = {
                "hnsw.ef_search": str(max(EF_SEARCH, k)),
                "hnsw.iterative_scan": "relaxed_order",
                "hnsw.max_scan_tuples": str(MAX_SCAN_TUPLES),
            }
            sql = f"{distance} WHERE {where}"
        search = (f"{sql} ORDER BY distance LIMIT ?", [to_vector(blob), *params, k])
        if settings:  # for this transaction only; a batch is sent in one round trip
            configure = (
                "SELECT " + ", ".join("set_config(?, ?, true)" for _ in settings),
                [item for pair in settings.items() for item in pair],
            )
            _, found = await self.db.batch(configure, search)
            rows = found if isinstance(found, list) else []
        else:
            rows = await self.db.fetchall(*search)
        # relaxed_order may hand rows back slightly out of order
        hits = sorted((float(r["distance"]), int(r["memory_id"])) for r in rows)
        return [(memory_id, 1.0 - distance) for distance, memory_id in hits]

    async def _visible(
        self, ids: list[int], kind: Kind | None, statuses: tuple[Status, ...]
    ) -> int:
        """How many vectors these scope ids hold (each counted up to `exact_max` + 1), which
        picks the exact scan or the graph. A scope's count is kept for `SIZE_TTL` seconds:
        counting walks the same index entries the exact scan reads, so counting on every
        query cost about as much again. A scope whose size crosses the limit meanwhile keeps
        its old search for up to a minute: an exact scan a little past the limit, or the
        graph a little early."""
        now = time.monotonic()
        keys = {i: (i, kind, statuses) for i in ids}
        counts = {
            i: cached[0]
            for i, key in keys.items()
            if (cached := self._sizes.get(key)) is not None and now - cached[1] < SIZE_TTL
        }
        if unknown := [i for i in keys if i not in counts]:
            per_kind = "" if kind is None else " AND kind = ?"
            rows = await self.db.fetchall(
                f"SELECT s.id, (SELECT COUNT(*) FROM (SELECT 1 FROM {TABLE}"
                f" WHERE scope_id = s.id AND status = ANY(?){per_kind} LIMIT ?) c) AS n"
                " FROM unnest(CAST(? AS bigint[])) AS s(id)",
                [list(statuses), *([] if kind is None else [kind]), self.exact_max + 1, unknown],
            )
            if len(self._sizes) + len(rows) > _MAX_SIZES:
                self._sizes.clear()
            for row in rows:
                counts[int(row["id"])] = int(row["n"])
                self._sizes[keys[int(row["id"])]] = (int(row["n"]), now)
        return sum(counts.values())

    async def stored(self, memory_ids: Sequence[int]) -> dict[int, bytes]:
        rows = await self.db.fetchall(
            f"SELECT memory_id, embedding::vector::text AS vector FROM {TABLE}"
            " WHERE memory_id = ANY(?)",
            (list(memory_ids),),
        )
        return {int(r["memory_id"]): array("f", json.loads(r["vector"])).tobytes() for r in rows}

    def dot_products(
        self, hits: Sequence[tuple[int, float]], blob: bytes
    ) -> list[tuple[int, float]]:
        """`<=>` is the cosine distance: similarity = q·v / |q| for unit vectors v."""
        norm = math.sqrt(math.fsum(x * x for x in array("f", blob)))
        return [(memory_id, s * norm) for memory_id, s in hits]

    async def _sample_mean(self) -> tuple[list[float] | None, int]:
        """The mean of up to `MEAN_SAMPLE` stored vectors (pgvector's `avg`), and how many."""
        row = await self.db.fetchone(
            f"SELECT avg(embedding::vector)::text AS mean, COUNT(*) AS n"
            f" FROM (SELECT embedding FROM {TABLE} LIMIT ?) s",
            (MEAN_SAMPLE,),
        )
        if row is None or row["mean"] is None:
            return None, 0
        return [float(x) for x in json.loads(row["mean"])], int(row["n"])

    @property
    def covered(self) -> bool:
        """Whether the scope index carries the vectors (see `COVER_MAX_DIM`)."""
        dim = int(self.signature.rsplit(":", 1)[1]) if self.signature else COVER_MAX_DIM + 1
        return dim <= COVER_MAX_DIM

    # -- writes, inside the caller's transaction ----------------------------------------

    async def put_many(self, tx: Tx, rows: Sequence[tuple[int, bytes, str, str, str]]) -> None:
        """Store vectors: (memory id, blob, kind, scope key, status) each."""
        await tx.executemany(
            PUT_SQL,
            [(m, to_vector(blob), scope_id(key), kind, st) for m, blob, kind, key, st in rows],
        )
        self._writes += len(rows)

    async def put(
        self, tx: Tx, memory_id: int, blob: bytes, kind: str, key: str, status: str
    ) -> None:
        """Store (or replace) a memory's vector, filed under scope key `key`."""
        await tx.execute(PUT_SQL, (memory_id, to_vector(blob), scope_id(key), kind, status))
        self._writes += 1

    async def delete(self, tx: Tx, memory_id: int) -> None:
        if self.exists:
            await tx.execute(f"DELETE FROM {TABLE} WHERE memory_id = ?", (memory_id,))
            self._writes += 1

    async def set_status(self, tx: Tx, memory_id: int, status: str) -> None:
        if self.exists:
            await tx.execute(
                f"UPDATE {TABLE} SET status = ? WHERE memory_id = ?", (status, memory_id)
            )

    async def move(self, tx: Tx, memory_id: int, kind: str, key: str, status: str) -> None:
        """Re-file a memory's vector under a new scope."""
        if self.exists:
            await tx.execute(
                f"UPDATE {TABLE} SET scope_id = ?, kind = ?, status = ? WHERE memory_id = ?",
                (scope_id(key), kind, status, memory_id),
            )
