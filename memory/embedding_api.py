"""Remote embeddings over HTTP: the one module that calls an embeddings API.

Two wire formats are spoken: Voyage AI (`POST {base}/embeddings` with `input_type`) and the
OpenAI-compatible `/v1/embeddings` that OpenAI, Ollama, vLLM, LM Studio and others serve.
`EmbeddingAPI` owns what every call needs: a timeout, retries with exponential backoff and
jitter on 429, 5xx and transport errors (honouring `Retry-After`), and logs that name the
host, status and attempt but never the key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from memory.errors import EmbeddingUnavailable

log = logging.getLogger(__name__)

VOYAGE_URL = "https://api.voyageai.com/v1"
OPENAI_URL = "https://api.openai.com/v1"
BATCH = 128
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 30.0

#: Output sizes of common models, so the vector index can be created before any call.
KNOWN_DIMS = {
    "voyage-3.5": 1024,
    "voyage-3.5-lite": 1024,
    "voyage-3-large": 1024,
    "voyage-3": 1024,
    "voyage-3-lite": 512,
    "voyage-code-3": 1024,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "nomic-embed-text": 768,
    "all-minilm": 384,
    "mxbai-embed-large": 1024,
}


def embeddings_url(base: str) -> str:
    """`…/v1/embeddings` from a base URL given with or without `/v1` or `/embeddings`."""
    base = base.rstrip("/")
    if base.endswith("/embeddings"):
        return base
    if base.endswith("/v1"):
        return base + "/embeddings"
    return base + "/v1/embeddings"


def _loggable(url: str) -> str:
    """The URL without credentials or query string, which may carry a key."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class EmbeddingAPI:
    """JSON POSTs to one embeddings endpoint, with retries, timeouts and key-free logs."""

    def __init__(
        self,
        provider: str,
        url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.url = url
        self._where = _loggable(url)
        self._key = api_key
        self._attempts = attempts
        self._backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload`; return the JSON body or raise `EmbeddingUnavailable`."""
        for attempt in range(1, self._attempts + 1):
            started = time.monotonic()
            try:
                response = await self._client.post(self.url, json=payload)
            except httpx.TransportError as exc:
                log.warning(
                    "%s embeddings: %s on attempt %d (%s)",
                    self.provider,
                    type(exc).__name__,
                    attempt,
                    self._where,
                )
                if attempt == self._attempts:
                    raise EmbeddingUnavailable(
                        f"{self.provider} embeddings: {type(exc).__name__}", provider=self.provider
                    ) from None
                await asyncio.sleep(self._delay(attempt, None))
                continue
            elapsed_ms = (time.monotonic() - started) * 1000
            if response.status_code == 200:
                log.debug(
                    "%s embeddings: %d inputs in %.0f ms",
                    self.provider,
                    len(payload.get("input", ())),
                    elapsed_ms,
                )
                return self._json(response)
            log.warning(
                "%s embeddings: HTTP %d on attempt %d (%s): %s",
                self.provider,
                response.status_code,
                attempt,
                self._where,
                self._excerpt(response),
            )
            if response.status_code not in _RETRY_STATUS or attempt == self._attempts:
                raise EmbeddingUnavailable(
                    f"{self.provider} embeddings: HTTP {response.status_code}",
                    provider=self.provider,
                    status=response.status_code,
                )
            await asyncio.sleep(self._delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), _MAX_RETRY_AFTER)
            except ValueError:
                pass
        return self._backoff * 2 ** (attempt - 1) * (0.5 + random.random())

    def _excerpt(self, response: httpx.Response) -> str:
        text = response.text[:200]
        return text.replace(self._key, "***") if self._key else text

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise EmbeddingUnavailable(
                f"{self.provider} embeddings: response is not JSON", provider=self.provider
            ) from None
        if not isinstance(body, dict):
            raise EmbeddingUnavailable(
                f"{self.provider} embeddings: unexpected response", provider=self.provider
            )
        return body


def vectors_from(body: dict[str, Any], count: int, provider: str) -> list[list[float]]:
    """The `data[].embedding` lists of an embeddings response, in input order."""
    try:
        data = sorted(body["data"], key=lambda item: item.get("index", 0))
        vectors = [[float(x) for x in item["embedding"]] for item in data]
    except (KeyError, TypeError, ValueError):
        raise EmbeddingUnavailable(
            f"{provider} embeddings: malformed response", provider=provider
        ) from None
    if len(vectors) != count or len({len(v) for v in vectors}) > 1 or not vectors[0]:
        raise EmbeddingUnavailable(
            f"{provider} embeddings: expected {count} vectors of one size", provider=provider
        )
    return vectors


class _RemoteEmbedder:
    name = "remote"

    def __init__(self, api: EmbeddingAPI, model: str) -> None:
        self.api = api
        self.model = model
        self.dim = KNOWN_DIMS.get(model, 0)

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            body = await self.api.post(self._payload(batch, query))
            vectors = vectors_from(body, len(batch), self.name)
            if self.dim and len(vectors[0]) != self.dim:
                raise EmbeddingUnavailable(
                    f"{self.name} embeddings: {self.model} returned {len(vectors[0])} dimensions"
                    f", expected {self.dim}",
                    provider=self.name,
                )
            self.dim = len(vectors[0])
            out.extend(vectors)
        return out

    def _payload(self, batch: list[str], query: bool) -> dict[str, Any]:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.api.aclose()


class VoyageEmbedder(_RemoteEmbedder):
    """Voyage AI embeddings (`VOYAGE_API_KEY`)."""

    name = "voyage"

    def _payload(self, batch: list[str], query: bool) -> dict[str, Any]:
        return {"input": batch, "model": self.model, "input_type": "query" if query else "document"}


class OpenAICompatibleEmbedder(_RemoteEmbedder):
    """Any OpenAI-compatible `/v1/embeddings` endpoint: OpenAI, Ollama, vLLM, LM Studio."""

    name = "openai"

    def _payload(self, batch: list[str], query: bool) -> dict[str, Any]:
        return {"input": batch, "model": self.model, "encoding_format": "float"}
