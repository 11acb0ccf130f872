"""The tool catalog: every discovered tool under its `SERVER__TOOL` name, with its tier.

Model APIs accept tool names matching `^[a-zA-Z0-9_-]{1,64}$`, MCP servers do not promise
that, so each tool gets an exposed name: `SERVER__TOOL` with other characters replaced by
`_`. A name that is too long, or that would collide with another tool's, is shortened and
given a short hash of its real server and tool names, so the mapping back is exact and
stable. The catalog is rebuilt from every server's raw listing, in server-name order, each
time one of them changes, so the same set of tools always gets the same names.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp.types as mt
from jsonschema.protocols import Validator

from bot.base.config import Tier
from tools.policy import ApprovalPolicy
from tools.validation import compile_validator

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_MAX = 64
_HASH = 6


@dataclass(frozen=True)
class ToolInfo:
    """One tool as people, policy and the model see it."""

    name: str  # SERVER__TOOL, safe for model APIs
    server: str
    tool: str  # the name the server knows it by
    description: str
    input_schema: dict[str, Any]
    annotations: Mapping[str, Any]  # MCP ToolAnnotations, camelCase keys; empty if none
    tier: Tier
    tier_source: str


@dataclass(frozen=True)
class ServerStatus:
    """One MCP server: whether it is up, why not, and the tools it last listed."""

    name: str
    transport: str  # stdio | http | builtin
    up: bool
    reason: str | None
    tools: list[ToolInfo] = field(default_factory=list)
    mode: str = "shared"  # shared | per-user
    connected: int | None = None  # per-user: how many people have connected


@dataclass(frozen=True)
class CatalogEntry:
    info: ToolInfo
    validator: Validator


def exposed_name(server: str, tool: str, taken: set[str]) -> str:
    """The model-safe `SERVER__TOOL` name, unique among `taken`."""
    base = _INVALID.sub("_", f"{server}__{tool}")
    if len(base) <= _MAX and base not in taken:
        return base
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:_HASH]
    return f"{base[: _MAX - _HASH - 1]}_{digest}"


def annotations_of(tool: mt.Tool) -> dict[str, Any]:
    if tool.annotations is None:
        return {}
    return tool.annotations.model_dump(by_alias=True, exclude_none=True)


def build_catalog(
    listings: Mapping[str, list[mt.Tool]], policy: ApprovalPolicy
) -> dict[str, CatalogEntry]:
    """Exposed name -> entry, for every server's listed tools."""
    catalog: dict[str, CatalogEntry] = {}
    for server in sorted(listings):
        for tool in sorted(listings[server], key=lambda t: t.name):
            name = exposed_name(server, tool.name, set(catalog))
            if name in catalog:
                log.warning("MCP server %s: tool %r duplicates another; ignored", server, tool.name)
                continue
            catalog[name] = _entry(name, server, tool, policy)
    return catalog


def _entry(name: str, server: str, tool: mt.Tool, policy: ApprovalPolicy) -> CatalogEntry:
    annotations = annotations_of(tool)
    tier, source = policy.resolve(name, annotations or None)
    schema = dict(tool.input_schema or {"type": "object"})
    info = ToolInfo(
        name=name,
        server=server,
        tool=tool.name,
        description=tool.description or tool.title or "",
        input_schema=schema,
        annotations=annotations,
        tier=tier,
        tier_source=source,
    )
    return CatalogEntry(info=info, validator=compile_validator(name, schema))
