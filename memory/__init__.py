"""Long-term memory: episodes, facts, hybrid recall, consolidation, decay and backups.

Start-up (in the composition function):

    embedder, warning = load_embedder(config.memory, os.environ)   # warning -> log, doctor
    store = MemoryStore(db, embedder, config.memory)
    if await store.prepare():              # builds or checks the vector index
        background.add(asyncio.create_task(store.reembed_all()))

Per task: `retrieve_for_task()` at the start, `record_episode()` at the end,
`apply_feedback()` on 👍 / 👎. Scheduled: `consolidation.propose_facts()` (daily),
`decay.archive_stale()` and `decay.purge_archived()` (weekly), `backup.nightly_backup()`.

Nothing here imports Slack or an LLM client: fact extraction is a function passed in.
"""

from memory.embeddings import Embedder, load_embedder
from memory.episodes import EpisodeInput, apply_feedback, record_episode
from memory.records import Memory, MemoryDraft, Scope
from memory.retrieval import RecalledContext, retrieve_for_task
from memory.store import MemoryStore

__all__ = [
    "Embedder",
    "EpisodeInput",
    "Memory",
    "MemoryDraft",
    "MemoryStore",
    "RecalledContext",
    "Scope",
    "apply_feedback",
    "load_embedder",
    "record_episode",
    "retrieve_for_task",
]
