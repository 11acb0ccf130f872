import asyncio

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from tests.tools.conftest import GatewayFactory, ctx_for
from tools.catalog import NAME, exposed_name
from tools.doctor import describe


def test_plain_names() -> None:
    assert exposed_name("github", "create_issue", set()) == "github__create_issue"


def test_characters_models_reject_are_replaced() -> None:
    name = exposed_name("docs", "search.v2/all pages", set())
    assert name == "docs__search_v2_all_pages" and NAME.match(name)


def test_long_and_colliding_names_get_a_stable_hash() -> None:
    long = exposed_name("server", "x" * 100, set())
    assert len(long) == 64 and NAME.match(long)
    assert long == exposed_name("server", "x" * 100, set())
    first = exposed_name("a", "b.c", set())
    second = exposed_name("a", "b/c", {first})
    assert first == "a__b_c" and second != first and NAME.match(second)


async def test_calls_map_back_to_the_real_tool_name(make_gateway: GatewayFactory) -> None:
    server = MCPServer("odd")
    seen: list[str] = []

    @server.tool(name="search.v2/all", annotations=ToolAnnotations(read_only_hint=True))
    def search(q: str) -> str:
        seen.append(q)
        return f"found {q}"

    @server.tool(name="search_v2_all")
    def search_plain(q: str) -> str:
        seen.append(f"plain {q}")
        return "plain"

    gateway = await make_gateway(builtin={"odd": server})
    tools = {t.tool: t.name for t in gateway.tools()}
    assert set(tools) == {"search.v2/all", "search_v2_all"}
    assert all(NAME.match(name) for name in tools.values())
    assert len(set(tools.values())) == 2
    result = await asyncio.wait_for(
        gateway.call(tools["search.v2/all"], {"q": "x"}, ctx_for(gateway)), 5
    )
    assert result.content == "found x" and seen == ["x"]


async def test_doctor_lines(make_gateway: GatewayFactory) -> None:
    server = MCPServer("t")

    @server.tool()
    def write(x: int) -> int:
        return x

    gateway = await make_gateway(builtin={"t": server})
    (status,) = gateway.servers()
    assert describe(status) == ("MCP t (built in): up, 1 tools", ["t__write  block   (default)"])
