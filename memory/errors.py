"""Errors the memory package raises on purpose (subclasses of `bot.base.errors.CoworkerError`).

    CoworkerError
    ├── EmbeddingUnavailable   the embeddings provider could not load or did not answer
    └── BackupFailed           (from bot.base.errors) a backup copy failed its integrity check

Memory degrades to keyword search when embeddings fail, so this error rarely reaches an
edge: the store catches it, logs it and carries on without vectors.
"""

from __future__ import annotations

from bot.base.errors import BackupFailed, CoworkerError

__all__ = ["BackupFailed", "EmbeddingUnavailable"]


class EmbeddingUnavailable(CoworkerError):
    user_message = "Semantic memory search is unavailable right now."

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
