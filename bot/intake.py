"""Intake: a Slack message becomes a task, a reply continues one, a redelivery does nothing.

Every event is recorded by `event_id` and by channel + ts in the same transaction that
creates or continues the task, so a redelivered event (or the `message` twin of an
`app_mention`) creates nothing new.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.base.clock import now
from bot.base.config import Config
from bot.base.db import Tx
from bot.tasks import PRIORITIES, Task, TaskStatus, TaskStore

_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")
_FLAG_PRIORITY = re.compile(r"(?<!\S)!(low|normal|high|urgent)\b", re.IGNORECASE)
#: `!budget` and the word after it when that has a digit in it (a word without one is left
#: in the request, and the flag is answered as having no amount).
_FLAG_BUDGET = re.compile(r"(?<!\S)!budget\b(?:[ \t]+(\S*\d\S*))?", re.IGNORECASE)
_AMOUNT = re.compile(r"^\$?(\d+(?:\.\d+)?)\$?$")
_FLAG_VISIBLE = re.compile(r"(?<!\S)!visible\b", re.IGNORECASE)
_URGENT_WORDS = re.compile(r"\b(urgent|urgently|asap|right away|immediately)\b", re.IGNORECASE)
_HIGH_WORDS = re.compile(r"\bhigh[- ]priority\b", re.IGNORECASE)
_LOW_WORDS = re.compile(r"\blow[- ]priority\b|\bno rush\b|\bwhenever\b", re.IGNORECASE)
_SLACK_LINK = re.compile(r"<(https?://[^>|]+)(?:\|[^>]*)?>")
_BARE_LINK = re.compile(r"(?<![<|])\bhttps?://[^\s>]+")
_COWORKER_PREFIX = re.compile(r"^\s*([a-z0-9][a-z0-9_-]{0,31})\s*:(?!//)\s*", re.IGNORECASE)


@dataclass
class IncomingMessage:
    """A Slack message, as the handlers parsed it."""

    event_id: str
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str | None = None
    team_id: str | None = None
    channel_type: str | None = None
    mention: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)
    assistant: bool = False
    #: The text's length when it was longer than intake takes (`text` is its beginning).
    cut_from: int | None = None

    @property
    def is_dm(self) -> bool:
        return self.channel_type == "im" or self.channel.startswith("D")


@dataclass
class ParsedRequest:
    text: str
    priority: int = 1
    coworker: str | None = None
    budget_usd: float | None = None
    #: `!budget` as written when it gave no usable amount ("0", "-5", "lots"): answered.
    budget_unusable: str | None = None
    #: A `name:` prefix naming no configured coworker (the request is routed as usual).
    unknown_coworker: str | None = None
    high_visibility: bool = False
    links: list[str] = field(default_factory=list)


def parse_budget(match: re.Match[str] | None) -> tuple[float | None, str | None]:
    """(dollars, None) from a usable `!budget` flag; (None, what was written) otherwise."""
    if match is None:
        return None, None
    written = (match.group(1) or "").replace(",", "")
    amount = _AMOUNT.match(written)
    dollars = float(amount.group(1)) if amount else 0.0
    if dollars > 0:
        return dollars, None
    return None, match.group(0).strip()


def parse_request(text: str, config: Config) -> ParsedRequest:
    """Priority, coworker, budget and links from the words of a request."""
    links = _SLACK_LINK.findall(text) + _BARE_LINK.findall(text)
    body = _MENTION.sub("", text).strip()
    priority = 1
    if m := _FLAG_PRIORITY.search(body):
        priority = PRIORITIES.index(m.group(1).lower())
    elif _URGENT_WORDS.search(body):
        priority = 3
    elif _HIGH_WORDS.search(body):
        priority = 2
    elif _LOW_WORDS.search(body):
        priority = 0
    budget, unusable = parse_budget(_FLAG_BUDGET.search(body))
    visible = bool(_FLAG_VISIBLE.search(body)) or priority == 3
    body = _FLAG_VISIBLE.sub("", _FLAG_BUDGET.sub("", _FLAG_PRIORITY.sub("", body))).strip()
    coworker = unknown = None
    if (m := _COWORKER_PREFIX.match(body)) and config.coworker(m.group(1).lower()):
        coworker = m.group(1).lower()
        body = body[m.end() :].strip()
    elif m and config.coworkers and not m.group(1).isdigit():
        unknown = m.group(1).lower()  # kept in the request: it may not have meant a name
    return ParsedRequest(
        text=body,
        priority=priority,
        coworker=coworker,
        budget_usd=budget,
        budget_unusable=unusable,
        unknown_coworker=unknown,
        high_visibility=visible,
        links=list(dict.fromkeys(links)),
    )


@dataclass
class IntakeResult:
    kind: str  # created | continued | closed | duplicate | ignored | rate_limited | empty
    task: Task | None = None
    #: What the person should know about how the message was taken (said in the thread).
    notes: list[str] = field(default_factory=list)


#: The event a capped `!budget` leaves on its task, for the plan to say so.
BUDGET_CAPPED = "budget_capped"


def budget_note(events: list[dict[str, Any]]) -> str | None:
    """What the plan says about a budget a request asked for beyond `max_task_usd`."""
    capped = next((e for e in reversed(events) if e["kind"] == BUDGET_CAPPED), None)
    if capped is None:
        return None
    asked = json.loads(capped["detail"])["asked"]
    return f"you asked for ${asked:,.2f}: more than this needs an approver's top-up"


class Intake:
    def __init__(self, tasks: TaskStore, config: Config) -> None:
        self.tasks = tasks
        self.db = tasks.db
        self.config = config

    async def receive(self, msg: IncomingMessage) -> IntakeResult:
        """Create or continue a task from a message; record the event exactly once."""
        existing, notes = None, []
        if msg.thread_ts and msg.thread_ts != msg.ts:
            existing = await self.tasks.find_by_thread(msg.channel, msg.thread_ts)
        if existing is None and not (msg.mention or msg.is_dm):
            return IntakeResult("ignored")
        moved: list[Any] = []
        async with self.db.transaction() as tx:
            if not await self._record(tx, msg):
                return IntakeResult("duplicate")
            # Counted in the transaction that creates, under the person's lock: a burst
            # cannot slip past the limit, not even one spread over several replicas.
            if existing is None and await self._over_rate(tx, msg.user):
                return IntakeResult("rate_limited")
            if existing is not None:
                taken, moved = await self._continue(tx, existing, msg)
                task_id, kind = existing.id, "continued" if taken else "closed"
            else:
                parsed = parse_request(msg.text, self.config)
                if not parsed.text and not msg.files:
                    return IntakeResult("empty")
                task_id, kind = await self._create(tx, msg, parsed), "created"
                notes = [
                    *self._coworker_note(parsed),
                    *await self._budget_notes(tx, task_id, parsed),
                ]
            await tx.execute(
                "UPDATE slack_events SET task_id = ? WHERE event_id = ?", (task_id, msg.event_id)
            )
        if kind == "continued":  # committed: a running task looks at its row next turn
            self.tasks.note_reply(task_id)
            await self.tasks.moved(moved)
        task = await self.tasks.get(task_id)
        if kind == "created":
            self.tasks.created(task)
        if kind in ("created", "continued") and msg.cut_from:
            notes.insert(
                0,
                f"Your message was {msg.cut_from:,} characters long; I read only the first "
                f"{len(msg.text):,}.",
            )
        return IntakeResult(kind, task, notes if kind in ("created", "continued") else [])

    async def _record(self, tx: Tx, msg: IncomingMessage) -> bool:
        # Both keys count: the event id, and channel + ts (an app_mention's `message` twin).
        recorded = await tx.execute(
            "INSERT INTO slack_events (event_id, channel, ts, received_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (msg.event_id, msg.channel, msg.ts, now()),
        )
        return recorded == 1

    async def _over_rate(self, tx: Tx, user: str) -> bool:
        await tx.lock(f"user-limit:{user}")
        started = await tx.fetchval(
            "SELECT COUNT(*) FROM tasks WHERE delegator = ? AND created_at > ? AND parent_id IS NULL",
            (user, now() - 60),
        )
        return int(started or 0) >= self.config.runner.max_new_tasks_per_minute

    async def _create(self, tx: Tx, msg: IncomingMessage, parsed: ParsedRequest) -> int:
        files = [
            {k: f.get(k) for k in ("id", "name", "mimetype", "url_private", "size")}
            for f in msg.files
        ]
        return await self.tasks.create(
            tx,
            status=TaskStatus.RECEIVED,
            priority=parsed.priority,
            coworker=parsed.coworker or "",
            delegator=msg.user,
            team_id=msg.team_id,
            channel=msg.channel,
            thread_ts=msg.thread_ts or msg.ts,
            message_ts=msg.ts,
            project=self.config.project_for(msg.channel),
            request=parsed.text or "(see the attached files)",
            files=files,
            links=parsed.links,
            budget_usd=self._budget(parsed),
            high_visibility=int(parsed.high_visibility),
            assistant=int(msg.assistant),
        )

    def _coworker_note(self, parsed: ParsedRequest) -> list[str]:
        """Who exists, when the request began with a name that is none of them."""
        if parsed.unknown_coworker is None:
            return []
        names = [f"`{c.name}`" for c in self.config.coworkers]
        missing = f"There is no coworker called `{parsed.unknown_coworker}` here"
        if len(names) == 1:
            return [f"{missing} (only {names[0]}), so {names[0]} takes it."]
        listed = f"{', '.join(names[:-1])} and {names[-1]}"
        return [
            f"{missing} (there are {listed}), so I'll choose one. To pick, start the request "
            f"with its name, like `{self.config.coworkers[0].name}: …`."
        ]

    def _budget(self, parsed: ParsedRequest) -> float:
        """`!budget` up to `[budget] max_task_usd`, else the coworker's or the default."""
        if parsed.budget_usd is not None:
            return min(parsed.budget_usd, self.config.budget.max_usd)
        return self._coworker_budget(parsed.coworker)

    async def _budget_notes(self, tx: Tx, task_id: int, parsed: ParsedRequest) -> list[str]:
        """What to tell the person about a `!budget` that was capped or could not be used."""
        ref, cap = f"T-{task_id}", self.config.budget.max_usd
        if parsed.budget_unusable is not None:
            usual = self._coworker_budget(parsed.coworker)
            return [
                f"`{parsed.budget_unusable}` has no amount I can use (dollars above 0, like "
                f"`!budget 5`), so {ref} has the usual budget of ${usual:.2f}."
            ]
        if parsed.budget_usd is None or parsed.budget_usd <= cap:
            return []
        await tx.execute(
            "INSERT INTO task_events (task_id, kind, actor, detail, at) VALUES (?, ?, NULL, ?, ?)",
            (task_id, BUDGET_CAPPED, json.dumps({"asked": parsed.budget_usd, "cap": cap}), now()),
        )
        return [
            f"You asked for a budget of ${parsed.budget_usd:,.2f}; a request can set at most "
            f"${cap:,.2f} (`[budget] max_task_usd`), so {ref} starts with ${cap:,.2f} and "
            "going past it needs an approver's top-up."
        ]

    def _coworker_budget(self, name: str | None) -> float:
        cw = self.config.coworker(name) if name else None
        return (cw.budget_usd if cw and cw.budget_usd else None) or self.config.budget.task_usd

    async def _continue(self, tx: Tx, task: Task, msg: IncomingMessage) -> tuple[bool, list[Any]]:
        """A reply in the thread: an answer, a plan comment, news for a running task, or a
        follow-up; False when the task was cancelled (a cancel is final). With the task's
        move, if it moved (for `TaskStore.moved()` once the transaction commits).

        Only the delegator and configured approvers steer a task: anyone else's reply is kept
        for the record but never reaches the model (it runs with the delegator's tools) and
        changes no state. Neither does a reply to a cancelled task.
        """
        text = _MENTION.sub("", msg.text).strip()
        steers = msg.user == task.delegator or msg.user in self.config.approvals.approvers
        # The status as of this transaction, with the task's row locked until it commits (the
        # no-op UPDATE is the row lock both engines take): a run finishing on any replica
        # either moves the task first (then the reply is a follow-up, queued here) or waits
        # for this reply and finds it pending afterwards.
        row = await tx.fetchone(
            "UPDATE tasks SET status = status WHERE id = ? RETURNING status, plan", (task.id,)
        )
        assert row is not None  # tasks are never deleted
        status, planned = TaskStatus(row["status"]), row["plan"] is not None
        open_ = status != TaskStatus.CANCELLED
        await tx.execute(
            "INSERT INTO task_inputs (task_id, author, text, ts, at, consumed)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (task.id, msg.user, text, msg.ts, now(), int(not (steers and open_))),
        )
        if not (steers and open_):
            return open_, []
        to = self.reopened_as(status, planned)
        if to is None:
            return True, []
        # Planned again: the old plan is approved for nothing.
        cleared = {"plan": None} if to == TaskStatus.RECEIVED else {}
        move = self.tasks.move(task.id, to, from_=status, finished_at=None, **cleared)
        return True, await tx.fetchall(*move)

    @staticmethod
    def reopened_as(status: TaskStatus, planned: bool) -> TaskStatus | None:
        """Where a reply from someone who steers the task moves it (None: it stays)."""
        S = TaskStatus
        if status in (S.WAITING_INPUT, S.AWAITING_PLAN_APPROVAL) and not planned:
            return S.RECEIVED
        if status == S.AWAITING_PLAN_APPROVAL:
            return S.RECEIVED  # a comment on the plan: plan again with it
        if status in (S.WAITING_INPUT, S.DONE, S.FAILED):
            return S.QUEUED if planned else S.RECEIVED  # never acting without a plan
        return None
