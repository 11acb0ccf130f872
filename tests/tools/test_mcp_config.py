import json
from pathlib import Path

import pytest

from bot.base.errors import ConfigError
from tools.mcp_config import HttpServer, StdioServer, load_mcp_config


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / ".mcp.json"
    path.write_text(json.dumps(data))
    return path


def test_standard_format_with_expansion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "github": {
                    "command": "npx",
                    "args": ["-y", "server-github"],
                    "env": {"GITHUB_TOKEN": "${GH}"},
                },
                "docs": {
                    "type": "http",
                    "url": "http://${HOST:-localhost}:9/mcp",
                    "headers": {"Authorization": "Bearer ${DOCS}"},
                },
            }
        },
    )
    servers = load_mcp_config(path, env={"GH": "ghp_x", "DOCS": "t0k"})
    assert isinstance(servers["github"], StdioServer)
    assert servers["github"].env == {"GITHUB_TOKEN": "ghp_x"}
    assert isinstance(servers["docs"], HttpServer)
    assert servers["docs"].url == "http://localhost:9/mcp"
    assert servers["docs"].headers["Authorization"] == "Bearer t0k"


def test_missing_variable_names_server_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, {"mcpServers": {"gh": {"command": "x", "env": {"T": "${NOPE}"}}}})
    with pytest.raises(ConfigError, match=r"mcpServers\.gh\.env\.T: environment variable NOPE"):
        load_mcp_config(path, env={})


def test_missing_command_or_url_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mcpServers\.a\.command"):
        load_mcp_config(write(tmp_path, {"mcpServers": {"a": {"args": []}}}), env={})
    with pytest.raises(ConfigError, match=r"mcpServers\.b\.url"):
        load_mcp_config(write(tmp_path, {"mcpServers": {"b": {"type": "http"}}}), env={})


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    assert load_mcp_config(tmp_path / "absent.json") == {}
    bad = tmp_path / ".mcp.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_mcp_config(bad)


def test_a_per_user_entry_carries_a_client_registered_beforehand(tmp_path: Path) -> None:
    oauth = {"client_id": "cw-123", "client_secret": "${GH_SECRET}", "scopes": ["repo"]}
    path = write(
        tmp_path, {"mcpServers": {"gh": {"type": "http", "url": "https://x/mcp", "oauth": oauth}}}
    )
    [server] = load_mcp_config(path, env={"GH_SECRET": "s3cret"}).values()
    assert isinstance(server, HttpServer) and server.oauth is not None
    assert (server.oauth.client_id, server.oauth.client_secret, server.oauth.scopes) == (
        "cw-123",
        "s3cret",
        ["repo"],
    )


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"url": "https://x/mcp", "headers": {"A": "b"}, "oauth": {}}, "oauth"),
        ({"url": "https://x/mcp", "oauth": {"client_secret": "s"}}, "oauth"),
        ({"url": "https://x/mcp", "oauth": {"client": "x"}}, "oauth.client"),
        ({"url": "https://x/mcp", "oauth": {"scopes": "repo"}}, "oauth.scopes"),
    ],
)
def test_a_wrong_oauth_key_is_named(tmp_path: Path, entry: dict[str, object], key: str) -> None:
    path = write(tmp_path, {"mcpServers": {"gh": {"type": "http", **entry}}})
    with pytest.raises(ConfigError, match=rf"mcpServers\.gh\.{key}:"):
        load_mcp_config(path, env={})


def test_the_vs_code_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, {"servers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}}})
    with pytest.raises(ConfigError, match='"servers" is the key VS Code uses; .*"mcpServers"'):
        load_mcp_config(path, env={})


def test_invalid_json_shows_the_offending_line(tmp_path: Path) -> None:
    bad = tmp_path / ".mcp.json"
    bad.write_text('{"mcpServers": {\n  "time": {"command": "uvx" "args": []}\n}}\n')
    with pytest.raises(ConfigError) as info:
        load_mcp_config(bad)
    assert str(info.value) == (
        f"{bad}: not valid JSON at line 2, column 29 (expecting ',' delimiter): "
        '"time": {"command": "uvx" "args": []}'
    )


def test_wrong_values_are_said_in_plain_words(tmp_path: Path) -> None:
    path = write(tmp_path, {"mcpServers": {"a": {"command": 5}}})
    with pytest.raises(ConfigError) as info:
        load_mcp_config(path, env={})
    assert str(info.value) == f"{path}: mcpServers.a.command: must be text"


def test_a_servers_file_named_explicitly_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file \\(COWORKER_MCP_CONFIG names it"):
        load_mcp_config(tmp_path / "absent.json", required=True)
