"""Real server processes and endpoints: stdio, streamable HTTP, crashes, start failures."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from mcp.server.mcpserver import MCPServer

from bot.base.db import Database
from bot.base.errors import ConfigError
from tests.tools.conftest import (
    GatewayFactory,
    Recorder,
    config,
    ctx_for,
    eventually,
    names,
    recorded_lines,
    serve_http,
    stdio_recording,
)
from tests.tools.servers.recording import build_server
from tools.doctor import describe
from tools.gateway import McpGateway
from tools.mcp_config import HttpServer, StdioServer

TIME = StdioServer(
    command=sys.executable, args=["-m", "mcp_server_time", "--local-timezone", "UTC"]
)


async def test_stdio_and_third_party_servers(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    gateway = await make_gateway({"rec": stdio_recording(record), "time": TIME})
    assert all(s.up for s in gateway.servers())
    now = await asyncio.wait_for(
        gateway.call("time__get_current_time", {"timezone": "Europe/Paris"}, ctx_for(gateway)), 10
    )
    assert now.status == "ok" and '"timezone": "Europe/Paris"' in now.content
    assert gateway.tool("time__convert_time") is not None
    echo = await asyncio.wait_for(gateway.call("rec__echo", {"text": "hi"}, ctx_for(gateway)), 10)
    assert echo.content == "hi"
    assert recorded_lines(record) == [{"tool": "echo", "args": {"text": "hi"}}]


async def test_invalid_arguments_never_reach_a_stdio_server(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    record = tmp_path / "rec.jsonl"
    gateway = await make_gateway({"rec": stdio_recording(record)})
    result = await asyncio.wait_for(gateway.call("rec__add", {"a": [1]}, ctx_for(gateway)), 10)
    assert result.status == "invalid"
    assert recorded_lines(record) == []


async def test_crash_mid_call_opens_the_breaker_and_others_stay_up(
    make_gateway: GatewayFactory, tmp_path: Path, recorder: Recorder
) -> None:
    record = tmp_path / "rec.jsonl"
    cfg = config(gateway={"breaker_failures": 3, "breaker_cooldown": "60s", "call_timeout": "10s"})
    gateway = await make_gateway(
        {"rec": stdio_recording(record), "time": TIME},
        builtin={"mem": build_server(recorder, "mem")},
        cfg=cfg,
        retry_initial=0.05,
    )
    for _ in range(3):
        crashed = await asyncio.wait_for(gateway.call("rec__crash", {}, ctx_for(gateway)), 15)
        assert (crashed.status, crashed.is_error) == ("error", True)
        assert "may or may not have run" in crashed.content
    fourth = await asyncio.wait_for(gateway.call("rec__crash", {}, ctx_for(gateway)), 5)
    assert fourth.status == "unavailable" and "failed repeatedly" in fourth.content
    assert len(recorded_lines(record)) == 3  # the fourth never reached the server
    other = await asyncio.wait_for(gateway.call("mem__echo", {"text": "ok"}, ctx_for(gateway)), 5)
    assert other.status == "ok"
    now = await asyncio.wait_for(
        gateway.call("time__get_current_time", {"timezone": "UTC"}, ctx_for(gateway)), 10
    )
    assert now.status == "ok"
    await eventually(lambda: next(s for s in gateway.servers() if s.name == "rec").up, 10)


async def test_a_server_that_never_starts(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    token = "xoxb-9999-8888-supersecret"
    broken = stdio_recording(tmp_path / "x.jsonl", CRASH_ON_START="1")
    missing = StdioServer(command="/nonexistent/bin/npx", args=["--token", token])
    gateway = await make_gateway({"broken": broken, "missing": missing, "time": TIME})
    status = {s.name: s for s in gateway.servers()}
    assert status["time"].up and not status["broken"].up and not status["missing"].up
    assert status["broken"].reason is not None
    assert "exited" in status["broken"].reason
    assert "cannot open the widget database" in status["broken"].reason  # its last stderr line
    assert status["missing"].reason == "cannot start: command not found: npx"
    said = {s.name: describe(s) for s in gateway.servers()}
    lines = [line for headline, details in said.values() for line in (headline, *details)]
    text = "\n".join(lines)
    assert token not in text
    assert said["broken"][0].startswith(
        "MCP broken (stdio, shared): down: the server process exited"
    )
    assert said["missing"] == (
        "MCP missing (stdio, shared): down: cannot start: command not found: npx",
        [],
    )
    assert said["time"][0] == "MCP time (stdio, shared): up, 2 tools"
    assert any(
        "time__get_current_time" in line and "auto" in line and "annotation readOnlyHint" in line
        for line in lines
    )
    now = await asyncio.wait_for(
        gateway.call("time__get_current_time", {"timezone": "UTC"}, ctx_for(gateway)), 10
    )
    assert now.status == "ok"
    down = await gateway.call(
        "broken__echo", {"text": "x"}, ctx_for(gateway, allowed={"broken__echo"})
    )
    assert down.status == "unavailable" and "server broken is down" in down.content


async def test_start_timeout(make_gateway: GatewayFactory, db: Database) -> None:
    silent = StdioServer(command=sys.executable, args=["-c", "import time; time.sleep(30)"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    gateway = await make_gateway({"silent": silent}, cfg=config(gateway={"start_timeout": "0.5s"}))
    assert loop.time() - started < 5
    (status,) = gateway.servers()
    assert not status.up and status.reason == "no answer within 0.5 s of starting"


async def test_tool_list_changes_over_stdio(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await make_gateway({"rec": stdio_recording(tmp_path / "rec.jsonl")})
    assert gateway.tool("rec__extra") is None
    grown = await asyncio.wait_for(gateway.call("rec__grow", {}, ctx_for(gateway)), 10)
    assert grown.status == "ok"
    await eventually(lambda: gateway.tool("rec__extra") is not None)
    extra = await asyncio.wait_for(gateway.call("rec__extra", {"x": 7}, ctx_for(gateway)), 10)
    assert extra.content == "7"


async def test_streamable_http(make_gateway: GatewayFactory, recorder: Recorder) -> None:
    server = build_server(recorder, "web")
    async with serve_http(server) as url:
        spec = HttpServer(type="http", url=url, headers={"Authorization": "Bearer test-token-123"})
        gateway = await make_gateway({"web": spec})
        assert gateway.servers()[0].up
        result = await asyncio.wait_for(
            gateway.call("web__add", {"a": 1, "b": 2}, ctx_for(gateway)), 10
        )
        assert result.content == "3"
        await asyncio.wait_for(gateway.call("web__grow", {}, ctx_for(gateway)), 10)
        await eventually(lambda: gateway.tool("web__extra") is not None)
        assert recorder.tools() == ["add", "grow"]
        await gateway.stop()


async def test_http_server_that_goes_away_and_comes_back(
    make_gateway: GatewayFactory, recorder: Recorder
) -> None:
    async with serve_http(build_server(recorder, "web")) as url:
        gateway = await make_gateway({"web": HttpServer(type="http", url=url)}, retry_initial=0.05)
        assert (await gateway.call("web__echo", {"text": "1"}, ctx_for(gateway))).status == "ok"
    gone = await asyncio.wait_for(gateway.call("web__echo", {"text": "2"}, ctx_for(gateway)), 10)
    assert gone.is_error and gone.status in ("error", "unavailable")
    await eventually(lambda: not gateway.servers()[0].up)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    async with serve_http(build_server(recorder, "web"), port=port):
        await eventually(lambda: gateway.servers()[0].up, 10)
        back = await asyncio.wait_for(
            gateway.call("web__echo", {"text": "3"}, ctx_for(gateway)), 10
        )
        assert back.status == "ok"
        await gateway.stop()
    assert recorder.calls == [("echo", {"text": "1"}), ("echo", {"text": "3"})]


async def test_http_server_not_listening(make_gateway: GatewayFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = HttpServer(type="http", url=f"http://user:pw@127.0.0.1:{port}/mcp/secret-path?key=abc")
    gateway = await make_gateway({"web": spec})
    (status,) = gateway.servers()
    assert not status.up
    assert status.reason == f"cannot connect to http://127.0.0.1:{port}"


async def test_stop_is_clean_and_later_calls_are_unavailable(
    make_gateway: GatewayFactory, tmp_path: Path, recorder: Recorder
) -> None:
    before = asyncio.all_tasks()
    gateway = await make_gateway(
        {"rec": stdio_recording(tmp_path / "rec.jsonl")},
        builtin={"mem": build_server(recorder, "mem")},
    )
    assert names(gateway.servers()) == ["mem", "rec"]
    await asyncio.wait_for(gateway.stop(), 15)
    assert asyncio.all_tasks() == before
    assert not any(s.up for s in gateway.servers())
    late = await gateway.call("rec__echo", {"text": "x"}, ctx_for(gateway))
    assert late.status == "unavailable"


async def test_limits_for_a_server_that_does_not_exist_are_refused(db: Database) -> None:
    cfg = config(gateway={"servers": {"tme": {"max_concurrency": 2}}})
    with pytest.raises(ConfigError) as info:
        McpGateway({"time": TIME}, cfg, db, builtin={"memory": MCPServer("memory")})
    assert str(info.value) == (
        "coworker.toml: gateway.servers.tme: there is no MCP server named 'tme' "
        "(servers: memory, time)"
    )
