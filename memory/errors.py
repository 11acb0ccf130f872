"""Errors the memory package raises on purpose (subclasses of `bot.base.errors.CoworkerError`).

    CoworkerError
    ├── EmbeddingUnavailable   the embeddings provider could not load or did not answer
    ├── FileRejected           a file to import or to search from has a bad line
    └── BackupFailed           (from bot.base.errors) a backup copy failed its integrity check

Memory degrades to keyword search when embeddings fail, so this error rarely reaches an
edge: the store catches it, logs it and carries on without vectors.
"""

from __future__ import annotations

from pathlib import Path

from bot.base.errors import BackupFailed, CoworkerError

__all__ = ["BackupFailed", "EmbeddingUnavailable", "FileRejected"]


class EmbeddingUnavailable(CoworkerError):
    user_message = "Semantic memory search is unavailable right now."

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class FileRejected(CoworkerError):
    """A file for `memory import` or `memory search --queries` is not what it reads.

    `line` is 1-based, or None when the whole file is at fault.
    """

    def __init__(self, *, path: Path, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason
