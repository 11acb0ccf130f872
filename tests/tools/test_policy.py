from typing import Any

import pytest

from bot.base.config import PolicyConfig
from tools.policy import ApprovalPolicy

RO = {"readOnlyHint": True}
NOT_DESTRUCTIVE = {"readOnlyHint": False, "destructiveHint": False}
DESTRUCTIVE = {"destructiveHint": True}


@pytest.mark.parametrize(
    ("rules", "default", "name", "annotations", "tier", "source"),
    [
        # annotations, as the MCP spec defines them
        ({}, "block", "gh__get", RO, "auto", "annotation readOnlyHint"),
        ({}, "block", "gh__label", NOT_DESTRUCTIVE, "notify", "annotation destructiveHint=false"),
        ({}, "auto", "gh__delete", DESTRUCTIVE, "block", "annotation destructiveHint"),
        (
            {},
            "auto",
            "gh__edit",
            {"readOnlyHint": False},
            "block",
            "annotation readOnlyHint=false (destructiveHint defaults to true)",
        ),
        (
            {},
            "block",
            "gh__odd",
            {"readOnlyHint": True, "destructiveHint": True},
            "auto",
            "annotation readOnlyHint",
        ),
        # no hints at all: the operator's default
        ({}, "block", "gh__x", None, "block", "default"),
        ({}, "notify", "gh__x", None, "notify", "default"),
        ({}, "notify", "gh__x", {"title": "X"}, "notify", "default"),
        # a rule wins over annotations, both ways
        ({"time__*": "auto"}, "block", "time__set", DESTRUCTIVE, "auto", 'rule "time__*"'),
        ({"gh__*": "block"}, "auto", "gh__get", RO, "block", 'rule "gh__*"'),
        # precedence among rules: exact, then most literal characters
        (
            {"gh__*": "block", "gh__merge": "notify"},
            "block",
            "gh__merge",
            None,
            "notify",
            'rule "gh__merge"',
        ),
        (
            {"*": "auto", "gh__*": "notify", "gh__merge_*": "block"},
            "auto",
            "gh__merge_pr",
            RO,
            "block",
            'rule "gh__merge_*"',
        ),
        ({"*": "auto", "gh__*": "notify"}, "block", "gh__list", None, "notify", 'rule "gh__*"'),
        ({"*": "auto", "gh__*": "notify"}, "block", "jira__get", None, "auto", 'rule "*"'),
        ({"gh__?et": "block", "gh__*": "auto"}, "auto", "gh__get", None, "block", 'rule "gh__?et"'),
        # equally specific rules that disagree: the stricter one
        ({"gh__a*": "auto", "gh__*a": "block"}, "auto", "gh__aa", None, "block", 'rule "gh__*a"'),
        # a rule that does not match leaves annotations in charge
        ({"gh__*": "block"}, "block", "time__now", RO, "auto", "annotation readOnlyHint"),
    ],
)
def test_tier_table(
    rules: dict[str, Any], default: str, name: str, annotations: Any, tier: str, source: str
) -> None:
    policy = ApprovalPolicy(PolicyConfig.model_validate({"default": default, "tools": rules}))
    assert policy.resolve(name, annotations) == (tier, source)


def test_rule_order_in_the_file_does_not_matter() -> None:
    forward = PolicyConfig(tools={"gh__*": "auto", "gh__merge": "block"})
    backward = PolicyConfig(tools={"gh__merge": "block", "gh__*": "auto"})
    for cfg in (forward, backward):
        assert ApprovalPolicy(cfg).resolve("gh__merge", RO) == ("block", 'rule "gh__merge"')


def test_matching_is_case_sensitive() -> None:
    policy = ApprovalPolicy(PolicyConfig(tools={"GH__*": "auto"}))
    assert policy.resolve("gh__x", None) == ("block", "default")
