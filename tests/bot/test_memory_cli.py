"""`python -m bot memory import` and `memory search`, run as the operator runs them: a real
process over a real database, with no Slack, MCP or Anthropic settings at all."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.__main__ import parser
from tests.bot.test_cli import run_bot

TEST_EMBEDDINGS = '[memory]\nembeddings = "test"\n'


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "coworker.toml").write_text(TEST_EMBEDDINGS)
    return tmp_path


def bot(workdir: Path, *args: str) -> tuple[int, str, str]:
    result = run_bot(
        "memory", *args, cwd=workdir, env={"DATABASE_URL": f"sqlite:///{workdir / 'c.db'}"}
    )
    return result.returncode, result.stdout, result.stderr


def rows(workdir: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(workdir / "c.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


RECORDS = [
    {
        "text": "Request: rotate the staging database password\nOutcome: done",
        "kind": "episode",
        "scope": "project:web",
        "created_at": "2024-05-01T10:00:00Z",
        "ref": "tickets:41",
    },
    {
        "text": "Invoices are exported from Stripe every Monday",
        "kind": "fact",
        "scope": "team",
        "created_at": 1714557600,
        "ref": "tickets:42",
    },
    {"text": "Priya prefers terse updates", "kind": "fact", "scope": "user:U7", "ref": "t:43"},
]


def test_import_is_idempotent_by_ref_and_keeps_dates_and_scopes(workdir: Path) -> None:
    source = write_jsonl(workdir / "old.jsonl", RECORDS)
    code, out, err = bot(workdir, "import", str(source))
    assert code == 0, err
    assert "3 memories added" in out
    code, out, err = bot(workdir, "import", str(source))
    assert code == 0, err
    assert "0 memories added, 3 already imported" in out
    stored = rows(
        workdir,
        "SELECT ref, kind, scope, project, user_id, status, created_at FROM memories ORDER BY ref",
    )
    assert stored == [
        ("t:43", "fact", "user", None, "U7", "proposed", stored[0][6]),
        ("tickets:41", "episode", "project", "web", None, "active", 1714557600.0),
        ("tickets:42", "fact", "team", None, None, "proposed", 1714557600.0),
    ]
    # Each imported memory's neighbourhood was looked at (too small here for a term).
    assert rows(workdir, "SELECT COUNT(*) FROM memories WHERE hubness_at IS NULL") == [(0,)]


def test_a_bad_line_is_named_and_nothing_is_imported(workdir: Path) -> None:
    before = write_jsonl(workdir / "before.jsonl", RECORDS[2:])
    assert bot(workdir, "import", str(before))[0] == 0
    good = write_jsonl(workdir / "good.jsonl", RECORDS[:1])
    bad = write_jsonl(
        workdir / "bad.jsonl",
        [RECORDS[1], RECORDS[2], {"text": "no kind here", "ref": "x:1"}, RECORDS[0]],
    )
    code, out, err = bot(workdir, "import", str(good), str(bad))
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert lines == [f'error: {bad}:3: "kind" is required'], err
    assert "Traceback" not in err
    assert rows(workdir, "SELECT ref FROM memories") == [("t:43",)]
    (workdir / "typo.jsonl").write_text('{"text": "a", "kind": "fact", "ref": "1"}\n{"text": \n')
    code, _, err = bot(workdir, "import", str(workdir / "typo.jsonl"))
    assert code != 0 and "typo.jsonl:2: not JSON" in err


def test_documents_become_facts_in_the_review_queue(workdir: Path) -> None:
    doc = workdir / "onboarding.md"
    doc.write_text(
        "# Onboarding\n\nAsk Priya for VPN access on your first day.\n\n"
        "## Deploys\n\nWe deploy on Tuesdays after the standup.\n"
        "Rollbacks use the `rollback` make target.\n"
    )
    code, out, err = bot(workdir, "import", "--scope", "project:web", str(doc))
    assert code == 0, err
    facts = rows(workdir, "SELECT kind, status, scope, project, content, ref FROM memories")
    assert [f[:4] for f in facts] == [("fact", "proposed", "project", "web")] * 2
    assert facts[0][4] == "Onboarding: Ask Priya for VPN access on your first day."
    assert facts[1][4].startswith("Deploys: We deploy on Tuesdays")
    assert all(str(f[5]).startswith("doc:onboarding.md:") for f in facts)
    # Proposed facts are not recalled until someone approves them.
    code, out, _ = bot(workdir, "search", "VPN access", "--scope", "project:web", "--json")
    assert json.loads(out)["hits"] == []
    other = workdir / "adr-7.txt"
    other.write_text("We chose SQLite because one file is enough for one team.")
    code, _, err = bot(workdir, "import", "--approve", str(other), str(doc))
    assert code == 0, err
    assert rows(workdir, "SELECT status FROM memories WHERE ref LIKE 'doc:adr-7.txt:%'") == [
        ("active",)
    ]
    assert rows(workdir, "SELECT count(*) FROM memories") == [(3,)]


def test_search_json_returns_refs_and_marks_nothing_used(workdir: Path) -> None:
    bot(workdir, "import", "--approve", str(write_jsonl(workdir / "m.jsonl", RECORDS)))
    code, out, err = bot(
        workdir, "search", "staging database password", "--scope", "project:web", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["query"] == "staging database password"
    top = result["hits"][0]
    assert (top["ref"], top["kind"], top["scope"]) == ("tickets:41", "episode", "project:web")
    assert top["score"] > 0 and top["created_at"] == "2024-05-01T10:00:00Z"
    # The user's fact is not visible without the user's scope, the team's always is.
    code, out, _ = bot(workdir, "search", "Stripe invoices Priya", "--json")
    assert {h["ref"] for h in json.loads(out)["hits"]} == {"tickets:42"}
    queries = write_jsonl(
        workdir / "q.jsonl",
        [
            {"query": "terse updates", "scope": "user:U7"},
            {"query": "invoices", "at": "2024-06-01T00:00:00Z"},
        ],
    )
    code, out, err = bot(workdir, "search", "--queries", str(queries), "--json", "--k", "1")
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert [[h["ref"] for h in a["hits"]] for a in answers] == [["t:43"], ["tickets:42"]]
    assert rows(workdir, "SELECT count(*) FROM memories WHERE use_count > 0") == [(0,)]
    assert rows(workdir, "SELECT count(*) FROM memories WHERE last_used_at IS NOT NULL") == [(0,)]
    code, out, _ = bot(workdir, "search", "staging password", "--scope", "project:web")
    assert code == 0 and "ref tickets:41" in out


@pytest.mark.parametrize(
    ("args", "wrong"),
    [
        (["search"], "query"),
        (["search", "x", "--k", "0"], "--k"),
        (["search", "x", "--scope", "channel:C1"], "--scope"),
        (["search", "x", "--at", "yesterday"], "--at"),
        (["import"], "FILE"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], wrong: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["memory", *args])
    assert exit_.value.code == 2 and wrong in capsys.readouterr().err


def test_a_reply_is_found_by_the_message_it_answers(workdir: Path) -> None:
    thread = [
        {"text": "Ana: which region did we move billing to?", "kind": "episode", "ref": "c:1"},
        {
            "text": "Ben: Frankfurt, last March",
            "kind": "episode",
            "ref": "c:2",
            "context": "Ana: which region did we move billing to?",
        },
    ]
    code, _, err = bot(workdir, "import", str(write_jsonl(workdir / "chat.jsonl", thread)))
    assert code == 0, err
    code, out, err = bot(workdir, "search", "billing region", "--json")
    assert code == 0, err
    hits = {h["ref"]: h for h in json.loads(out)["hits"]}
    assert set(hits) == {"c:1", "c:2"}  # "billing" and "region" are only in c:2's context
    assert hits["c:2"]["text"] == "Ben: Frankfurt, last March"
    assert hits["c:2"]["context"] == "Ana: which region did we move billing to?"
    assert hits["c:1"]["context"] is None
    code, out, _ = bot(workdir, "search", "billing region")
    assert "(after: Ana: which region did we move billing to?)" in out
    long = [{**thread[1], "ref": "c:3", "context": "x" * 2001}]
    code, _, err = bot(workdir, "import", str(write_jsonl(workdir / "long.jsonl", long)))
    assert code != 0 and 'long.jsonl:1: "context" is longer than 2,000 characters' in err
