"""The built-in model: what `embeddings = "auto"` gives on a fresh install, with no network."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bot.base.config import MemoryConfig
from memory.embeddings import load_embedder
from memory.local_embeddings import DIM, MODEL, NICE, LocalEmbedder

REPO = Path(__file__).resolve().parents[2]

# Runs in the child before anything else: every Internet socket and name lookup raises, and
# a connection to a live listener on 127.0.0.1 proves it (it would succeed otherwise).
BLOCK_NETWORK = """
import runpy, socket, sys

class NetworkBlocked(OSError):
    pass

def hook(event, args):
    if event == "socket.__new__" and args[1] in (socket.AF_INET, socket.AF_INET6):
        raise NetworkBlocked(f"blocked: a {args[1]!r} socket")
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.connect"):
        raise NetworkBlocked(f"blocked: {event}")

sys.addaudithook(hook)
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
except NetworkBlocked:
    pass
else:
    sys.exit("the network is not blocked")
sys.argv = ["python -m bot", *sys.argv[2:]]
runpy.run_module("bot", run_name="__main__", alter_sys=True)
"""


def network_namespace() -> list[str]:
    """`unshare` into a namespace without network where the kernel allows it, too."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10)
    return [unshare, "-rn"] if probe.returncode == 0 else []


def offline_bot(tmp_path: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ANTHROPIC_", "COWORKER_", "DATABASE_", "HF_"))
    }
    env |= {"PYTHONPATH": str(REPO), "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    return subprocess.run(
        [*network_namespace(), sys.executable, "-c", BLOCK_NETWORK, str(port), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no coworker.toml: the defaults a fresh install has
        env=env,
        timeout=300,
    )


@pytest.fixture
def listener() -> object:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def test_the_default_install_embeds_for_real_with_the_network_blocked(
    tmp_path: Path, listener: int
) -> None:
    records = [
        ("Password resets are done by an admin in the Okta console", "it:1"),
        ("The office coffee machine is descaled on Fridays", "it:2"),
        ("Lunch orders go through the #food channel before eleven", "it:3"),
    ]
    source = tmp_path / "it.jsonl"
    source.write_text(
        "".join(json.dumps({"text": t, "kind": "fact", "ref": r}) + "\n" for t, r in records)
    )
    imported = offline_bot(tmp_path, listener, "memory", "import", "--approve", str(source))
    assert imported.returncode == 0, imported.stderr
    assert "keyword-only" not in imported.stderr
    # No word in common with the answer: only a real embedding can find it.
    found = offline_bot(
        tmp_path,
        listener,
        "memory",
        "search",
        "how can I get my login credentials changed",
        "--json",
        "--k",
        "1",
    )
    assert found.returncode == 0, found.stderr
    assert [h["ref"] for h in json.loads(found.stdout)["hits"]] == ["it:1"]
    conn = sqlite3.connect(tmp_path / "c.db")
    try:
        signatures = {r[0] for r in conn.execute("SELECT embedded_by FROM memories")}
        cached = conn.execute("SELECT count(*), min(dim) FROM embedding_cache").fetchone()
    finally:
        conn.close()
    assert signatures == {f"local:{MODEL}:{DIM}"}
    assert cached == (3, DIM)


def test_auto_is_the_built_in_model() -> None:
    embedder, warning = load_embedder(MemoryConfig(), {})
    assert warning is None and isinstance(embedder, LocalEmbedder)
    embedder.close()


async def test_embedding_runs_off_the_event_loop_in_batches() -> None:
    embedder = LocalEmbedder(threads=1)
    texts = [f"note {i} about the deploy pipeline and its checks" for i in range(40)]
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        async with asyncio.timeout(120):
            vectors = await embedder.embed(texts)
            (query,) = await embedder.embed(["deploy pipeline checks"], query=True)
    finally:
        ticker.cancel()
        embedder.close()
    assert len(vectors) == 40 and {len(v) for v in vectors} == {DIM}
    assert ticks > 10  # the loop kept running while 40 texts were embedded
    assert abs(sum(x * x for x in query) - 1.0) < 1e-3


async def test_passages_yield_the_cores_and_queries_keep_the_loops_priority() -> None:
    embedder = LocalEmbedder(threads=1)
    loop = asyncio.get_running_loop()

    def where() -> tuple[int, int]:
        return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0)

    try:
        # each thread the model runs on, asked from that thread
        passage_tid, passage_nice = await loop.run_in_executor(embedder._passages, where)
        query_tid, query_nice = await loop.run_in_executor(embedder._queries, where)
    finally:
        embedder.close()
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert len({passage_tid, query_tid, threading.get_native_id()}) == 3
    assert passage_nice == min(19, loop_nice + NICE)
    assert query_nice == loop_nice  # a task's query, like the event loop, is not deferred


async def test_a_query_does_not_wait_behind_a_batch_of_passages() -> None:
    embedder = LocalEmbedder(threads=1)
    paragraph = "The deploy pipeline runs lint, the unit tests and a canary before production. "
    passages = [f"{i}: {paragraph * 6}" for i in range(16)]  # one batch: seconds of work
    try:
        await embedder.embed(["warm up"], query=True)  # the model is loaded
        writing = asyncio.create_task(embedder.embed(passages))
        await asyncio.sleep(0.05)  # the batch is running
        async with asyncio.timeout(60):
            (query,) = await embedder.embed(["how do we deploy"], query=True)
        assert not writing.done()  # answered while the batch was still being embedded
        async with asyncio.timeout(300):
            vectors = await writing
    finally:
        embedder.close()
    assert len(query) == DIM and len(vectors) == 16
