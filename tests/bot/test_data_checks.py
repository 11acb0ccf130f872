"""Query results against what the plan expected of them (issue 8, data operations)."""

import json

import pytest

from bot.plans import Expect, Plan, render_plan
from bot.validation import check_result

ROWS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


@pytest.mark.parametrize(
    ("text", "expect", "passed", "detail"),
    [
        (json.dumps(ROWS), Expect(min_rows=1, max_rows=2), True, "2 rows as expected"),
        (json.dumps({"results": ROWS}), Expect(max_rows=1), False, "expected 0–1 rows, got 2"),
        (json.dumps({"count": 2}), Expect(min_rows=1), False, "expected rows as JSON"),
        ("2 rows: a, b", Expect(min_rows=1), False, "expected rows as JSON"),
        (json.dumps(ROWS), Expect(row_schema={"required": ["email"]}), False, "row 1: 'email'"),
    ],
)
def test_a_result_is_checked_against_its_expectation(
    text: str, expect: Expect, passed: bool, detail: str
) -> None:
    check = check_result("db__query", expect, text)
    assert check.passed is passed
    assert detail in check.detail
    assert check.name == "db__query result"


@pytest.mark.parametrize(
    ("expect", "cut", "why"),
    [
        (Expect(max_rows=10), True, "too long to check"),
        (Expect(row_schema={"type": 7}), False, "could not be applied"),
        (Expect(row_schema={"$ref": "#/definitions/nowhere"}), False, "could not be applied"),
        (Expect(row_schema={"$ref": "https://example.com/s.json"}), False, "could not be applied"),
    ],
)
def test_what_cannot_be_checked_is_neither_passed_nor_failed(
    expect: Expect, cut: bool, why: str
) -> None:
    check = check_result("db__query", expect, json.dumps(ROWS), cut=cut)
    assert not check.checked and not check.failed
    assert check.line().startswith("➖ db__query result: not checked (") and why in check.line()


def test_an_unsound_expectation_is_dropped_not_the_plan() -> None:
    plan = Plan.model_validate(
        {
            "summary": "Count",
            "steps": [
                {"what": "A", "tools": ["db__query"], "expect": {"row_schema": "id, name"}},
                {"what": "B", "tools": ["db__query"], "expect": {"min_rows": 5, "max_rows": 1}},
                {"what": "C", "tools": ["db__query"], "expect": {}},
                {"what": "D", "tools": ["db__query"], "expect": {"max_rows": 3}},
            ],
        }
    )
    assert [s.expect for s in plan.steps] == [None, None, None, Expect(max_rows=3)]


def test_the_plan_shows_what_a_step_expects() -> None:
    plan = Plan.model_validate(
        {
            "summary": "Count",
            "steps": [
                {"what": "Query", "tools": ["db__query"], "expect": {"min_rows": 1, "max_rows": 50}}
            ],
        }
    )
    assert "1. Query (tools: db__query) [expects 1–50 rows]" in render_plan(plan)
