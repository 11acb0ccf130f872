"""Importing memories from files: JSON Lines records, and documents chunked into facts.

A `.jsonl` file holds one record per line:

    {"text": "...", "kind": "episode" | "fact", "scope": "team" | "project:NAME" | "user:UID",
     "created_at": "2024-05-01T12:00:00Z" or 1714564800, "ref": "the caller's id",
     "context": "what the text answers or follows"}

`text`, `kind` and `ref` are required; `scope` defaults to the team and `created_at` to now.
`context` (optional, up to `MAX_CONTEXT_CHARS`) is for a conversation's messages: give each
the message before it, and keyword search finds a short reply ("Yes, the blue one") by the
question it answers. It is shown with the memory; the memory's vector is of `text` alone.
Any other file is a document (Markdown or plain text: team docs, onboarding notes,
architecture decision records), cut into facts of at most `MAX_CHUNK_CHARS` at headings,
then paragraphs, then sentences; each fact starts with its section's heading, so it reads on
its own. A document's facts get refs made of the file name and a hash of their text, so a
second import of the same document adds only what changed.

Facts wait in the review queue (status `proposed`) unless imported with `approve`; episodes
are stored active. A file is read and checked whole before anything is stored, and stored
in one transaction: a bad line is reported by number and nothing of that file is imported.
No model is called, so an import needs no API key (vectors come from the configured
embeddings provider, as for any new memory).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.base import clock
from memory.errors import FileRejected
from memory.records import MAX_CONTEXT_CHARS, Kind, MemoryDraft, Scope
from memory.store import MemoryStore

MAX_CHUNK_CHARS = 500
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class ImportRecord(BaseModel):
    """One line of a JSON Lines import."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    kind: Kind
    scope: str = "team"
    created_at: float | str | None = None
    ref: str = Field(min_length=1)
    context: str | None = Field(default=None, max_length=MAX_CONTEXT_CHARS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("is blank")
        return text


@dataclass(frozen=True)
class ImportResult:
    """What one file gave: how many memories were new, and how many were there already."""

    path: Path
    added: int
    skipped: int
    kind: Literal["records", "document"]

    def summary(self) -> str:
        known = f", {self.skipped} already imported" if self.skipped else ""
        what = "fact(s) from the document" if self.kind == "document" else "memories"
        return f"{self.path}: {self.added} {what} added{known}"


def parse_scope(text: str) -> tuple[Literal["team", "project", "user"], str | None]:
    """`team`, `project:NAME` or `user:UID` as (scope, owner); ValueError names the forms."""
    if text == "team":
        return "team", None
    prefix, _, owner = text.partition(":")
    if prefix in ("project", "user") and owner.strip():
        return ("project" if prefix == "project" else "user"), owner.strip()
    raise ValueError(f"scope {text!r} is not team, project:NAME or user:UID")


def search_scope(texts: list[str]) -> Scope:
    """The `Scope` that sees the given scopes (the team is always visible)."""
    project = user = None
    for text in texts:
        scope, owner = parse_scope(text)
        if scope == "project":
            project = owner
        elif scope == "user":
            user = owner
    return Scope(project=project, user_id=user)


def parse_time(value: float | str | None) -> float:
    """Epoch seconds from an ISO 8601 string (UTC if no zone is given) or a number."""
    if value is None:
        return clock.now()
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _draft(record: ImportRecord, approve: bool) -> MemoryDraft:
    scope, owner = parse_scope(record.scope)
    return MemoryDraft(
        kind=record.kind,
        content=record.text,
        scope=scope,
        project=owner if scope == "project" else None,
        user_id=owner if scope == "user" else None,
        status="proposed" if record.kind == "fact" and not approve else "active",
        ref=record.ref,
        context=(record.context or "").strip() or None,
    )


def _problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f'unknown field "{where}" (fields: text, kind, scope, created_at, ref, context)'
    if error["type"] == "missing":
        return f'"{where}" is required'
    if error["type"] == "string_too_long":
        return f'"{where}" is longer than {error["ctx"]["max_length"]:,} characters'
    message = error["msg"].removeprefix("Value error, ")
    return f'"{where}": {message}' if where else message


def read_records(path: Path, approve: bool) -> tuple[list[MemoryDraft], list[float]]:
    """The drafts and creation times of a JSON Lines file, or `FileRejected` at a bad line."""
    drafts: list[MemoryDraft] = []
    times: list[float] = []
    refs: dict[str, int] = {}
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = ImportRecord.model_validate(json.loads(line))
            drafts.append(_draft(record, approve))
            times.append(parse_time(record.created_at))
        except json.JSONDecodeError as exc:
            raise FileRejected(path=path, line=number, reason=f"not JSON ({exc.msg})") from None
        except ValidationError as exc:
            raise FileRejected(path=path, line=number, reason=_problem(exc)) from None
        except ValueError as exc:
            raise FileRejected(path=path, line=number, reason=str(exc)) from None
        if (first := refs.setdefault(record.ref, number)) != number:
            raise FileRejected(
                path=path, line=number, reason=f'ref "{record.ref}" is also on line {first}'
            )
    return drafts, times


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FileRejected(path=path, line=None, reason="is not UTF-8 text") from None
    except OSError as exc:
        raise FileRejected(
            path=path, line=None, reason=f"cannot be read ({exc.strerror or exc})"
        ) from None


def chunk_document(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """Facts of at most `limit` characters, each led by its section's heading."""
    chunks: list[str] = []
    heading = ""
    for section_heading, paragraphs in _sections(text):
        heading = section_heading or heading
        lead = f"{heading}: " if heading else ""
        for piece in _pack(paragraphs, limit - len(lead)):
            chunks.append(lead + piece)
    return chunks


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in document order; a code fence stays one paragraph."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    block: list[str] = []
    fenced = False

    def flush() -> None:
        if paragraph := "\n".join(block).strip():
            sections[-1][1].append(paragraph if fenced else " ".join(paragraph.split()))
        block.clear()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            if fenced:
                block.append(line)
                flush()
                fenced = False
                continue
            flush()
            fenced = True
        if fenced:
            block.append(line)
        elif match := _HEADING.match(line):
            flush()
            sections.append((match.group(2), []))
        elif not line.strip():
            flush()
        else:
            block.append(line)
    flush()
    return [(heading, paragraphs) for heading, paragraphs in sections if paragraphs]


def _pack(paragraphs: list[str], limit: int) -> list[str]:
    """Paragraphs joined into pieces of at most `limit` characters (long ones split)."""
    limit = max(limit, 80)
    pieces: list[str] = []
    current = ""
    for paragraph in paragraphs:
        for part in _split(paragraph, limit):
            if current and len(current) + 2 + len(part) <= limit:
                current += "\n\n" + part
            else:
                if current:
                    pieces.append(current)
                current = part
    if current:
        pieces.append(current)
    return pieces


def _split(paragraph: str, limit: int) -> list[str]:
    """A paragraph cut at sentence ends (then at spaces, then hard) to fit `limit`."""
    if len(paragraph) <= limit:
        return [paragraph]
    parts: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            parts.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) <= limit:
            current += " " + sentence
        else:
            if current:
                parts.append(current)
            current = sentence
    if current:
        parts.append(current)
    return [p for p in parts if p]


def read_document(path: Path, scope: str, approve: bool) -> list[MemoryDraft]:
    """A document's facts as drafts, refs from the file name and each fact's text."""
    try:
        kind, owner = parse_scope(scope)
    except ValueError as exc:
        raise FileRejected(path=path, line=None, reason=str(exc)) from None
    drafts = []
    for chunk in chunk_document(_read(path)):
        digest = hashlib.sha256(chunk.encode()).hexdigest()[:16]
        drafts.append(
            MemoryDraft(
                kind="fact",
                content=chunk,
                scope=kind,
                project=owner if kind == "project" else None,
                user_id=owner if kind == "user" else None,
                status="active" if approve else "proposed",
                ref=f"doc:{path.name}:{digest}",
            )
        )
    return drafts


def is_records(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".ndjson")


@dataclass(frozen=True)
class PreparedFile:
    """A file read and checked, ready to store: its drafts and their creation times."""

    path: Path
    kind: Literal["records", "document"]
    drafts: list[MemoryDraft]
    created_at: list[float] | None


def prepare_file(path: Path, *, scope: str = "team", approve: bool = False) -> PreparedFile:
    """Read and check one file (`FileRejected` at its first problem); `scope` is for documents."""
    if is_records(path):
        drafts, times = read_records(path, approve)
        return PreparedFile(path, "records", drafts, times)
    facts = read_document(path, scope, approve)
    # The same paragraph twice in one document is one fact.
    unique = list({d.ref: d for d in facts}.values())
    return PreparedFile(path, "document", unique, None)


async def store_file(store: MemoryStore, prepared: PreparedFile) -> ImportResult:
    """Store a prepared file's new memories in one transaction."""
    ids = await store.add_many(prepared.drafts, created_at=prepared.created_at, new_refs_only=True)
    added = len(ids)
    return ImportResult(prepared.path, added, len(prepared.drafts) - added, prepared.kind)


async def import_file(
    store: MemoryStore, path: Path, *, scope: str = "team", approve: bool = False
) -> ImportResult:
    """Import one file whole, or nothing of it."""
    return await store_file(store, prepare_file(path, scope=scope, approve=approve))
