"""Errors the memory package raises on purpose (subclasses of `bot.base.errors.CoworkerError`).

    CoworkerError
    ├── EmbeddingUnavailable   the embeddings provider could not load or did not answer
    └── BackupFailed           a backup copy failed its integrity check (old ones are kept)

Memory degrades to keyword search when embeddings fail, so this error rarely reaches an
edge: the store catches it, logs it and carries on without vectors.
"""

from __future__ import annotations

from bot.base.errors import CoworkerError


class EmbeddingUnavailable(CoworkerError):
    user_message = "Semantic memory search is unavailable right now."

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class BackupFailed(CoworkerError):
    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path
