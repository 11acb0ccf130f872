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
        (json.dumps(ROWS), Expect(row_schema={"type": 7}), False, "not a valid JSON Schema"),
    ],
)
def test_a_result_is_checked_against_its_expectation(
    text: str, expect: Expect, passed: bool, detail: str
) -> None:
    check = check_result("db__query", expect, text)
    assert check.passed is passed
    assert detail in check.detail
    assert check.name == "db__query result"


def test_a_cut_result_is_not_passed_unseen() -> None:
    check = check_result("db__query", Expect(max_rows=10), json.dumps(ROWS), cut=True)
    assert not check.passed and "too long to check" in check.detail


def test_the_plan_shows_what_a_step_expects() -> None:
    plan = Plan.model_validate({"summary": "Count", "steps": [
        {"what": "Query", "tools": ["db__query"], "expect": {"min_rows": 1, "max_rows": 50}}]})  # fmt: skip
    assert "1. Query (tools: db__query) [expects 1–50 rows]" in render_plan(plan)
