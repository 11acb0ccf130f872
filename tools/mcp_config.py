"""`.mcp.json`: the MCP servers file, in the format other MCP clients use.

    {"mcpServers": {
        "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                   "env": {"GITHUB_TOKEN": "${GITHUB_TOKEN}"}},
        "docs":   {"type": "http", "url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}}}

`${VAR}` (and `${VAR:-default}`) in any string is expanded from the environment; an unset
variable without a default is an error naming the server and the variable.

An HTTP entry is *per-user* when it carries an `oauth` key, or when its endpoint answers 401
with `WWW-Authenticate` (MCP authorization; see `tools.oauth`): each person then connects
their own account. `"oauth": {"client_id": …, "client_secret": "${VAR}", "scopes": […]}`
names a client registered with the server beforehand (servers without dynamic registration);
`"oauth": {}` says "per-user" and leaves registration to the spec's mechanisms.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from bot.base.errors import ConfigError
from bot.base.plain import offending_line, plain

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class StdioServer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["stdio"] = "stdio"
    command: str
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None


class OAuthClient(BaseModel):
    """A per-user server's OAuth client, registered beforehand (or `{}`: register as needed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    client_id: str | None = None
    client_secret: str | None = None
    scopes: list[str] = []


class HttpServer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["http"]
    url: str
    headers: dict[str, str] = {}
    oauth: OAuthClient | None = None

    @field_validator("oauth")
    @classmethod
    def _per_user_or_shared(cls, v: OAuthClient | None, info: ValidationInfo) -> OAuthClient | None:
        if v is not None and info.data.get("headers"):
            raise ValueError("a per-user server cannot also send static headers")
        if v is not None and v.client_secret and not v.client_id:
            raise ValueError("client_secret needs a client_id")
        return v


class McpServersFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    mcpServers: dict[str, Annotated[StdioServer | HttpServer, Field(discriminator="type")]] = Field(
        default_factory=dict
    )


ServerSpec = StdioServer | HttpServer


def expand(value: Any, env: Mapping[str, str], *, where: str, path: str) -> Any:
    """Expand `${VAR}` in every string inside `value`."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{path}: {where}: environment variable {name} is not set", path=path, key=where
            )

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [expand(v, env, where=where, path=path) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, env, where=f"{where}.{k}", path=path) for k, v in value.items()}
    return value


def _server_type(raw: dict[str, Any]) -> dict[str, Any]:
    kind = raw.get("type", "http" if "url" in raw else "stdio")
    if kind in ("streamable-http", "streamable_http"):
        kind = "http"
    return {**raw, "type": kind}


def parse_mcp_config(
    data: Any, *, env: Mapping[str, str] | None = None, path: str = ".mcp.json"
) -> dict[str, ServerSpec]:
    """Validate and expand a parsed `.mcp.json` document."""
    env = os.environ if env is None else env
    if isinstance(data, dict) and "servers" in data and "mcpServers" not in data:
        raise ConfigError(
            f'{path}: "servers" is the key VS Code uses; this file lists them under '
            '"mcpServers" (the same entries, renamed)',
            path=path,
            key="servers",
        )
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers", {}), dict):
        raise ConfigError(f'{path}: expected {{"mcpServers": {{...}}}}', path=path)
    servers: dict[str, ServerSpec] = {}
    for name, raw in data.get("mcpServers", {}).items():
        where = f"mcpServers.{name}"
        if not SERVER_NAME.match(name):
            raise ConfigError(
                f"{path}: {where}: server names may use letters, digits, _ and - (max 32)",
                path=path,
                key=where,
            )
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {where}: expected an object", path=path, key=where)
        expanded = expand(_server_type(raw), env, where=where, path=path)
        try:
            model = McpServersFile.model_validate({"mcpServers": {name: expanded}})
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"][3:]) or "type"
            raise ConfigError(
                f"{path}: {where}.{key}: {plain(err, mapping='object')}",
                path=path,
                key=f"{where}.{key}",
            ) from None
        servers[name] = model.mcpServers[name]
    return servers


def load_mcp_config(
    path: Path, env: Mapping[str, str] | None = None, *, required: bool = False
) -> dict[str, ServerSpec]:
    """Load `.mcp.json`; a missing file means no external servers, unless it is `required`
    (named explicitly by `COWORKER_MCP_CONFIG`)."""
    if not path.exists():
        if required:
            raise ConfigError(
                f"{path}: no such file (COWORKER_MCP_CONFIG names it; unset it for no servers)",
                path=str(path),
            )
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        line = offending_line(exc.doc, exc.lineno)
        raise ConfigError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} "
            f"({exc.msg[:1].lower()}{exc.msg[1:]}): {line}",
            path=str(path),
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid JSON (not UTF-8 text)", path=str(path)) from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON (nested too deeply)", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from None
    return parse_mcp_config(data, env=env, path=str(path))
