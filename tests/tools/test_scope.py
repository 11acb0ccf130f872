from bot.base.config import Config, parse_config
from tools.catalog import ToolInfo
from tools.scope import allowed_globs, scope_tools


def tool(name: str) -> ToolInfo:
    return ToolInfo(
        name=name,
        server=name.split("__")[0],
        tool=name.split("__")[1],
        description="",
        input_schema={"type": "object"},
        annotations={},
        tier="auto",
        tier_source="default",
    )


TOOLS = [
    tool(n) for n in ("github__get_issue", "github__merge", "time__now", "slack__post_message")
]

ROLES = parse_config(
    {
        "roles": {
            "dev": {"members": ["U1", "S_DEVS"], "tools": ["github__*", "time__*"]},
            "ops": {"members": ["U2"], "tools": ["slack__*"]},
            "default": {"tools": ["time__*"]},
        }
    }
)


def test_no_roles_means_everything() -> None:
    assert allowed_globs(Config(), "U9", set()) is None


def test_member_by_user_id() -> None:
    assert allowed_globs(ROLES, "U2", set()) == ["slack__*"]


def test_member_by_user_group_and_several_roles() -> None:
    globs = allowed_globs(ROLES, "U2", {"S_DEVS"})
    assert globs is not None and set(globs) == {"github__*", "time__*", "slack__*"}


def test_user_in_no_role_gets_default_role() -> None:
    assert allowed_globs(ROLES, "U404", {"S_OTHER"}) == ["time__*"]


def test_user_in_no_role_and_no_default_gets_nothing() -> None:
    cfg = parse_config({"roles": {"dev": {"members": ["U1"], "tools": ["*"]}}})
    assert allowed_globs(cfg, "U404", set()) == []
    assert scope_tools(TOOLS, ["*"], []) == []


def test_scope_is_the_intersection() -> None:
    scoped = scope_tools(TOOLS, ["github__*", "slack__*"], ["github__get_*", "time__*", "slack__*"])
    assert [t.name for t in scoped] == ["github__get_issue", "slack__post_message"]


def test_task_never_exceeds_delegator() -> None:
    delegator = allowed_globs(ROLES, "U404", set())  # default role: time only
    scoped = scope_tools(TOOLS, ["*"], delegator)
    assert [t.name for t in scoped] == ["time__now"]


def test_no_roles_leaves_coworker_globs() -> None:
    scoped = scope_tools(TOOLS, ["time__*"], None)
    assert [t.name for t in scoped] == ["time__now"]
