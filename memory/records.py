"""Typed memory records: what a memory is, what adding one takes, and who may see it.

Visibility is a `Scope`: a task in project P delegated by user U sees team memories, P's
memories and U's own. Each memory has one scope key ("team", "project:P", "user:U"), and
the indexes filter on values derived from it:
  * `scope_id`, a 64-bit hash: a vec0 integer metadata column (vec0 compares integers inside
    the KNN scan far faster than long text values);
  * `shard`, the vec0 partition key: the scope id for team and project memories, and one of
    `USER_SHARDS` buckets for user memories (a partition per user would reserve a vector
    chunk per user, mostly empty; one for all users would make every search scan them all);
  * `scope_tag`, a single FTS5 token, so keyword search filters by scope inside FTS5.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["episode", "fact"]
MemoryScope = Literal["team", "project", "user"]
Status = Literal["active", "proposed", "archived"]

KINDS: tuple[Kind, ...] = ("episode", "fact")
STATUSES: tuple[Status, ...] = ("active", "proposed", "archived")

#: Columns besides the core ones that `MemoryStore.add()` / `update()` accept.
EXTRA_FIELDS = frozenset(
    {
        "outcome",
        "feedback",
        "correction",
        "tools_used",
        "duration_s",
        "cost_usd",
        "sources",
        "decided_by",
    }
)
_JSON_FIELDS = ("sources", "tools_used")
#: The longest `context` a memory keeps (an imported message's predecessor, say).
MAX_CONTEXT_CHARS = 2000


def scope_key(scope: str, project: str | None, user_id: str | None) -> str:
    if scope == "project":
        return f"project:{project}"
    if scope == "user":
        return f"user:{user_id}"
    return "team"


def scope_id(key: str) -> int:
    """A stable signed 64-bit id for a scope key (what vec0 filters on)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


USER_SHARDS = 16


def shard(key: str) -> int:
    """The vec0 partition a scope key's vectors live in."""
    sid = scope_id(key)
    return 1 + sid % USER_SHARDS if key.startswith("user:") else sid


def scope_tag(key: str) -> str:
    """The FTS5 token for a scope key (digits only, so no stemmer touches it)."""
    return f"scope{scope_id(key) & 0xFFFF_FFFF_FFFF_FFFF}"


@dataclass(frozen=True)
class Scope:
    """What one task may recall: team memories, its project's, and its user's own."""

    project: str | None = None
    user_id: str | None = None

    def keys(self) -> list[str]:
        keys = ["team"]
        if self.project:
            keys.append(scope_key("project", self.project, None))
        if self.user_id:
            keys.append(scope_key("user", None, self.user_id))
        return keys

    def ids(self) -> list[int]:
        return [scope_id(k) for k in self.keys()]

    def tags(self) -> list[str]:
        return [scope_tag(k) for k in self.keys()]

    def sql(self, alias: str = "memories") -> tuple[str, list[Any]]:
        """A WHERE fragment (and its parameters) selecting the visible rows."""
        parts, params = [f"{alias}.scope = 'team'"], []
        if self.project:
            parts.append(f"({alias}.scope = 'project' AND {alias}.project = ?)")
            params.append(self.project)
        if self.user_id:
            parts.append(f"({alias}.scope = 'user' AND {alias}.user_id = ?)")
            params.append(self.user_id)
        return "(" + " OR ".join(parts) + ")", params

    def allows(self, memory: Memory) -> bool:
        return memory.scope_key in self.keys()


class MemoryDraft(BaseModel):
    """A memory about to be written; validation keeps scope and its owner consistent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    content: str = Field(min_length=1)
    scope: MemoryScope
    project: str | None = None
    user_id: str | None = None
    source_task: int | None = None
    permalink: str | None = None
    importance: float = Field(default=0.5, ge=0, le=1)
    status: Status = "active"
    sources: list[int] = []
    outcome: str | None = None
    feedback: Literal[-1, 1] | None = None
    correction: str | None = None
    tools_used: list[str] = []
    duration_s: float | None = None
    cost_usd: float | None = None
    decided_by: str | None = None
    #: the caller's id for an imported memory; unique, so a second import skips it
    ref: str | None = None
    #: what the memory answers or follows (e.g. the message before an imported reply):
    #: keyword search reads it with the content; the vector is of the content alone
    context: str | None = Field(default=None, max_length=MAX_CONTEXT_CHARS)

    @model_validator(mode="after")
    def _owner_matches_scope(self) -> Self:
        if self.scope == "project" and not self.project:
            raise ValueError("a project-scoped memory needs a project")
        if self.scope == "user" and not self.user_id:
            raise ValueError("a user-scoped memory needs a user_id")
        if not self.content.strip():
            raise ValueError("content is empty")
        return self

    @property
    def scope_key(self) -> str:
        return scope_key(self.scope, self.project, self.user_id)

    def columns(self) -> dict[str, Any]:
        """Column values for INSERT, JSON fields encoded."""
        values = self.model_dump()
        for name in _JSON_FIELDS:
            values[name] = json.dumps(values[name])
        values["scope_tag"] = scope_tag(self.scope_key)
        return values


class Memory(BaseModel):
    """A stored memory as read back; `score` is set by recall."""

    model_config = ConfigDict(frozen=True)

    id: int
    kind: Kind
    scope: MemoryScope
    project: str | None
    user_id: str | None
    content: str
    source_task: int | None
    permalink: str | None
    sources: list[int]
    importance: float
    status: Status
    outcome: str | None
    feedback: int | None
    correction: str | None
    tools_used: list[str]
    duration_s: float | None
    cost_usd: float | None
    consolidated_at: float | None
    decided_by: str | None
    embedded_by: str | None
    created_at: float
    updated_at: float
    last_used_at: float | None
    use_count: int
    archived_at: float | None
    ref: str | None = None
    context: str | None = None
    score: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> Memory:
        values = {k: row[k] for k in row.keys()}
        for name in _JSON_FIELDS:
            values[name] = json.loads(values[name])
        return cls.model_validate(values)

    @property
    def scope_key(self) -> str:
        return scope_key(self.scope, self.project, self.user_id)

    def draft(self, **changes: Any) -> MemoryDraft:
        """This memory as a draft with `changes` applied (validates the result)."""
        fields = {k: getattr(self, k) for k in MemoryDraft.model_fields}
        return MemoryDraft.model_validate(fields | changes)
