"""Memory quality: evidence recall@10 on LoCoMo, keyword-only, vector-only and hybrid.

    python benchmarks/memory_quality.py                          # default install's model
    python benchmarks/memory_quality.py --embeddings test        # another provider
    python benchmarks/memory_quality.py --data PATH --conversations 2

LoCoMo (Maharana et al., ACL 2024) is a public benchmark of long conversations between two
people over months, with questions whose `evidence` names the turns holding the answer. The
data is CC BY-NC 4.0 and is not part of this repository: the script reads it from `--data`
(default `../shared/data/locomo-dev.json`, beside the repository).

For each conversation, a fresh database gets every turn as one team episode, created at its
session's date (`Speaker: text`, and `[shares <caption>]` for a shared photo), with the turn
before it in its session as its `context`, through `memory import` (the same function: a
JSON Lines file, ref `<conversation>:<turn id>`); `--no-context` leaves the context out.
Each question is then asked a day after the last session through recall, as `memory search`
does: hybrid, and each search alone. A question's recall@10 is the share of its evidence
turns among the 10 memories returned, hit@10 whether any is; evidence ids that name no turn
are dropped, and questions left with none are not counted. Categories 1-4 (multi-hop,
temporal, open-domain, single-hop) make the headline figure; category 5 (adversarial: the
conversation has no answer) is shown apart. Latency is per hybrid query, the query's
embedding included, at the default k = 10. `--same-instant` stores every turn at one moment,
to show what freshness does to the ranking. `--cache FILE` keeps every vector the model
computes in FILE (by provider, model, query or passage, and text), so a second run embeds
nothing: for iterating on ranking (latency is then not the model's).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.base.config import MemoryConfig
from bot.base.db import open_database
from bot.base.migrations import migrate
from memory.embeddings import Embedder, load_embedder
from memory.importing import import_file
from memory.records import Scope
from memory.retrieval import Searches, recall
from memory.scoring import vector_weight
from memory.store import MemoryStore

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo-dev.json"
DAY = 86_400.0
MODES: tuple[Searches, ...] = ("hybrid", "keyword", "vector")
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


class CachedEmbedder:
    """An embedder's vectors kept in a file between runs (`--cache`): benchmark only."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner = inner
        self.name, self.model, self.dim = inner.name, inner.model, inner.dim
        self.file = sqlite3.connect(path)
        self.file.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, v TEXT)")

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        kind = f"{self.name}\0{self.model}\0{'query' if query else 'passage'}\0"
        keys = [hashlib.sha256((kind + t).encode()).hexdigest() for t in texts]
        found: dict[str, list[float]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self.file.execute(f"SELECT key, v FROM vectors WHERE key IN ({marks})", chunk)
            found.update((key, json.loads(v)) for key, v in rows)
        missing = list(dict.fromkeys(i for i, key in enumerate(keys) if key not in found))
        if missing:
            vectors = await self.inner.embed([texts[i] for i in missing], query=query)
            for i, vector in zip(missing, vectors, strict=True):
                found[keys[i]] = vector
            self.file.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(keys[i], json.dumps(v)) for i, v in zip(missing, vectors, strict=True)],
            )
            self.file.commit()
        self.dim = len(found[keys[0]]) if keys else self.dim
        return [found[key] for key in keys]

    def close(self) -> None:
        self.file.close()
        if close := getattr(self.inner, "close", None):
            close()


@dataclass
class Question:
    text: str
    category: int
    evidence: set[str]


@dataclass
class Conversation:
    name: str
    turns: list[dict[str, Any]]  # JSON Lines records for `memory import`
    questions: list[Question]
    asked_at: float


@dataclass
class Scores:
    recall: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    hit: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, category: int, found: set[str], evidence: set[str]) -> None:
        self.recall[category].append(len(found & evidence) / len(evidence))
        self.hit[category].append(float(bool(found & evidence)))

    def mean(self, which: dict[int, list[float]], categories: tuple[int, ...]) -> float:
        values = [v for c in categories for v in which[c]]
        return statistics.fmean(values) if values else float("nan")

    def count(self, categories: tuple[int, ...]) -> int:
        return sum(len(self.recall[c]) for c in categories)


def session_time(text: str) -> float:
    """'1:56 pm on 8 May, 2023' as epoch seconds (UTC)."""
    return datetime.strptime(text, "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC).timestamp()


def conversations(
    path: Path, same_instant: bool, no_context: bool = False
) -> Iterator[Conversation]:
    for sample in json.loads(path.read_text(encoding="utf-8")):
        conv = sample["conversation"]
        turns, ids, last = [], set(), 0.0
        for key, session in conv.items():
            if not key.startswith("session_") or not isinstance(session, list):
                continue
            at = session_time(conv[f"{key}_date_time"])
            last = max(last, at)
            before = None
            for turn in session:
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += f" [shares {turn['blip_caption']}]"
                ref = f"{sample['sample_id']}:{turn['dia_id']}"
                record = {"text": text, "kind": "episode", "created_at": at, "ref": ref}
                if before is not None and not no_context:
                    record["context"] = before
                turns.append(record)
                ids.add(turn["dia_id"])
                before = text
        if same_instant:
            for t in turns:
                t["created_at"] = last
        questions = []
        for qa in sample["qa"]:
            evidence = {e.strip() for item in qa["evidence"] for e in item.split(";")} & ids
            if evidence:
                questions.append(Question(qa["question"], int(qa["category"]), evidence))
        yield Conversation(sample["sample_id"], turns, questions, last + DAY)


async def measure(
    conv: Conversation, embedder: Embedder | None, config: MemoryConfig, workdir: Path
) -> tuple[dict[Searches, Scores], list[float], float]:
    db = await open_database(f"sqlite:///{workdir / f'{conv.name}.db'}")
    await migrate(db)
    store = MemoryStore(db, embedder, config)
    await store.prepare()
    records = workdir / f"{conv.name}.jsonl"
    records.write_text("".join(json.dumps(t) + "\n" for t in conv.turns), encoding="utf-8")
    started = time.perf_counter()
    result = await import_file(store, records)
    await store.refresh_hubness(limit=None)  # as `memory import` does after its files
    load_s = time.perf_counter() - started
    assert result.added == len(conv.turns), result
    scores = {mode: Scores() for mode in MODES}
    latencies = []
    prefix = f"{conv.name}:"
    modes = MODES if not store.keyword_only else ("hybrid", "keyword")
    for mode in modes:
        for q in conv.questions:
            started = time.perf_counter()
            hits = await recall(
                store, q.text, Scope(), kind="episode", k=10, at=conv.asked_at, searches=mode
            )
            if mode == "hybrid":
                latencies.append(time.perf_counter() - started)
            found = {m.ref.removeprefix(prefix) for m in hits if m.ref}
            scores[mode].add(q.category, found, q.evidence)
    await db.close()
    return scores, latencies, load_s


def merge(into: dict[Searches, Scores], more: dict[Searches, Scores]) -> None:
    for mode, s in more.items():
        for c, values in s.recall.items():
            into[mode].recall[c] += values
        for c, values in s.hit.items():
            into[mode].hit[c] += values


def report(scores: dict[Searches, Scores], latencies: list[float]) -> None:
    main = (1, 2, 3, 4)
    print(f"\n  {'':<14}{'recall@10':>10}{'hit@10':>9}   per category 1-4 (recall@10)")
    for mode in MODES:
        s = scores[mode]
        if not s.count(main):
            print(f"  {mode:<14}  (no embeddings provider)")
            continue
        cats = "  ".join(f"{c} {s.mean(s.recall, (c,)):.3f}" for c in main)
        print(f"  {mode:<14}{s.mean(s.recall, main):>10.3f}{s.mean(s.hit, main):>9.3f}   {cats}")
    n = scores["hybrid"].count(main)
    print(f"  ({n} questions of categories 1-4: " + ", ".join(CATEGORIES[c] for c in main) + ")")
    print(f"\n  category 5 ({CATEGORIES[5]}, {scores['hybrid'].count((5,))} questions, apart):")
    for mode in MODES:
        s = scores[mode]
        if s.count((5,)):
            print(f"  {mode:<14}{s.mean(s.recall, (5,)):>10.3f}{s.mean(s.hit, (5,)):>9.3f}")
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    print(f"\n  hybrid query latency (embedding included): p50 {p50:.1f} ms, p95 {p95:.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo JSON file")
    parser.add_argument(
        "--embeddings",
        default="auto",
        help="memory.embeddings provider (default: auto, what a fresh install gets)",
    )
    parser.add_argument(
        "--conversations", type=int, default=0, help="only the first N (default: all)"
    )
    parser.add_argument(
        "--same-instant", action="store_true", help="store every turn at the same moment"
    )
    parser.add_argument(
        "--no-context",
        action="store_true",
        help="import each turn without the turn before it as its context",
    )
    parser.add_argument(
        "--cache", type=Path, help="keep the model's vectors in this file between runs"
    )
    args = parser.parse_args()
    if not args.data.exists():
        parser.error(f"{args.data} not found (see --data)")
    config = MemoryConfig(embeddings=args.embeddings)
    embedder, warning = load_embedder(config, {})
    if warning:
        print(warning)
    if embedder is not None and args.cache is not None:
        embedder = CachedEmbedder(embedder, args.cache)
    name = f"{embedder.name}:{embedder.model}" if embedder else "none (keyword-only)"
    dates = "every turn at one instant" if args.same_instant else "real session dates"
    if args.no_context:
        dates += ", no context"
    print(f"== LoCoMo {args.data.name}: embeddings {name}, {dates}")
    totals = {mode: Scores() for mode in MODES}
    latencies: list[float] = []
    started = time.perf_counter()
    convs = list(conversations(args.data, args.same_instant, args.no_context))
    if args.conversations:
        convs = convs[: args.conversations]
    with tempfile.TemporaryDirectory(prefix="coworker-quality-") as tmp:
        for conv in convs:
            scores, lat, load_s = await measure(conv, embedder, config, Path(tmp))
            merge(totals, scores)
            latencies += lat
            print(
                f"  {conv.name}: {len(conv.turns)} turns imported in {load_s:.1f} s, "
                f"{len(conv.questions)} questions"
            )
    weight = vector_weight(embedder.name if embedder else None, config.vector_weight)
    print(f"  vector weight in fusion: {weight:.2f}")
    report(totals, latencies)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if close := getattr(embedder, "close", None):
        close()


if __name__ == "__main__":
    asyncio.run(main())
