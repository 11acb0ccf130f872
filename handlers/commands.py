"""`/coworker`: help, tasks, status, report, cancel, resume, budget, connections, and the
memory commands.

What a command shows of a task (its line, event log, calls) goes only to people who may see
that task (`bot.visibility`, through `Delegation`); for anyone else it does not exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.base.errors import ConnectFailed, CoworkerError, NotAllowed, TaskNotFound
from bot.report_text import render_timeline
from bot.tasks import Task, parse_task_ref
from bot.team_memory import describe
from bot.words import event_words, state_words, stop_words
from handlers import blocks as bk
from handlers.blocks import local_time
from handlers.responses import NOT_YOURS
from handlers.services import Services, services
from handlers.slack_app import outgoing

log = logging.getLogger(__name__)

HELP = """*Delegate work* by mentioning me or sending a DM: `@coworker summarize yesterday's failed CI runs`.
Flags: `!high` / `!urgent` / `!low` priority, `!budget 5` dollars, `dev: …` to pick a coworker.
*Commands*
• `/coworker tasks`: your tasks, and open ones in your channels
• `/coworker status T-42`: where a task stands · `/coworker report T-42`: its calls, step by step
• `/coworker cancel T-42` · `/coworker resume T-42`
• `/coworker budget`: spend this week
• `/coworker connections`: your accounts on tools that work as you (Connect, Disconnect)
• `/coworker remember <fact>` (add `--team` or `--me` for scope) · `/coworker forget <id or text>` · `/coworker memory`"""


@dataclass
class Blocks:
    """A reply with Block Kit blocks (and `text` for notifications)."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def task_line(task: Task) -> str:
    req = task.request.splitlines()[0][:80] if task.request else ""
    state = state_words(task.status)
    return f"`{task.ref}` {state} · {task.priority_name} · <@{task.delegator}> · {req}"


async def cmd_tasks(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    mine, open_ = await svc.delegation.tasks_for(user)
    lines = (
        ["*Your tasks*", *(task_line(t) for t in mine[:10])] if mine else ["You have no tasks yet."]
    )
    if open_:
        lines += ["*Open tasks in your channels*", *(task_line(t) for t in open_)]
    return "\n".join(lines)


async def cmd_status(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    task_id = parse_task_ref(arg)
    if task_id is None:
        return "Which task? For example `/coworker status T-42`."
    task, events = await svc.delegation.status_of(task_id, user)
    tz = await svc.directory.tz_of(user)
    lines = [
        task_line(task),
        f"steps: {task.steps} · spent ${task.spent_usd:.2f} of ${task.budget_usd:.2f}",
    ]
    if task.error:
        lines.append(f"stopped because: {stop_words(task.error)}")
    for e in events[-8:]:
        who = f" by <@{e['actor']}>" if e["actor"] else ""
        what = event_words(e["kind"], e["detail"])
        lines.append(f"• {local_time(e['at'], tz)} {what}{who}")
    return "\n".join(lines)


#: What an ephemeral report shows at most; the operator's CLI has the rest.
REPORT_CHARS = 3500


async def cmd_report(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    task_id = parse_task_ref(arg)
    if task_id is None:
        return "Which task? For example `/coworker report T-42`."
    text = render_timeline(await svc.delegation.timeline_of(task_id, user))
    if len(text) > REPORT_CHARS:
        cut = text[:REPORT_CHARS].rsplit("\n", 1)[0]
        text = f"{cut}\n… (cut: `python -m bot report --task T-{task_id}` shows it all)"
    return f"```\n{text}\n```"


async def _on_task(
    arg: str, verb: str, act: Callable[[int], Awaitable[bool]], ok: str, no: str
) -> str:
    task_id = parse_task_ref(arg)
    if task_id is None:
        return f"Which task? For example `/coworker {verb} T-42`."
    return (ok if await act(task_id) else no).format(ref=f"T-{task_id}")


async def cmd_cancel(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    return await _on_task(
        arg,
        "cancel",
        lambda t: svc.delegation.cancel(t, user),
        "Cancelled {ref}.",
        "{ref} is already finished.",
    )


async def cmd_resume(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    return await _on_task(
        arg,
        "resume",
        lambda t: svc.delegation.resume(t, user),
        "Resuming {ref}.",
        "{ref} is not paused or failed.",
    )


async def cmd_remember(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    arg = "".join(ch for ch in arg if ch.isprintable()).strip()
    if not arg.removeprefix("--team").removeprefix("--me").strip():
        return "What should I remember? For example `/coworker remember deploys freeze on Fridays`."
    fact = await svc.memory.remember(arg, user, cmd.get("channel_id"))
    return f"Remembered {describe(fact)}"


async def cmd_forget(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    if not arg:
        return "What should I forget? Give a fact id (`/coworker forget 12`) or some of its words."
    forgotten = await svc.memory.forget(arg, user, cmd.get("channel_id"))
    if not forgotten:
        return "I found nothing like that in what you can see."
    return "Forgot, from every index:\n" + "\n".join(f"• {describe(m)}" for m in forgotten)


async def cmd_memory(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    facts = await svc.memory.listing(user, cmd.get("channel_id"))
    if not facts:
        return "I know no facts in this scope yet. Teach me with `/coworker remember …`."
    return "*What I know here*\n" + "\n".join(f"• {describe(m)}" for m in facts)


async def cmd_budget(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    mine = await svc.delegation.my_tasks(user)
    spent = sum(t.spent_usd for t in mine)
    return f"Your last {len(mine)} task(s) spent ${spent:.2f}. `python -m bot report` has the team view."


async def cmd_help(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> str:
    return HELP


async def cmd_connections(svc: Services, user: str, arg: str, cmd: dict[str, Any]) -> Blocks:
    """The person's per-user servers, with Connect links (theirs: the reply is ephemeral)."""
    return Blocks("Your connections", await connections_listing(svc, user, links=True))


async def connections_listing(svc: Services, user: str, *, links: bool) -> list[dict[str, Any]]:
    views = await svc.connections.listing(user)
    made: dict[str, str] = {}
    if links:
        missing = [v.server for v in views if not v.connected]
        urls = await asyncio.gather(
            *(svc.connections.link(user, s) for s in missing), return_exceptions=True
        )
        for server, url in zip(missing, urls, strict=True):
            if isinstance(url, ConnectFailed):
                log.info("no Connect link for %s: %s", server, url.reason)
            elif isinstance(url, BaseException):
                raise url
            else:
                made[server] = url
    return bk.connections_blocks(views, made, where="command" if links else "home")


Command = Callable[[Services, str, str, dict[str, Any]], Awaitable[str | Blocks]]

COMMANDS: dict[str, Command] = {
    "help": cmd_help,
    "tasks": cmd_tasks,
    "status": cmd_status,
    "report": cmd_report,
    "cancel": cmd_cancel,
    "resume": cmd_resume,
    "remember": cmd_remember,
    "forget": cmd_forget,
    "memory": cmd_memory,
    "budget": cmd_budget,
    "connections": cmd_connections,
}


async def run_command(svc: Services, user: str, text: str, cmd: dict[str, Any]) -> str | Blocks:
    """The reply to `/coworker <text>`; errors become one short sentence."""
    name, _, arg = text.strip().partition(" ")
    handler = COMMANDS.get(name.lower() or "help")
    if handler is None:
        return f"I don't know `{name[:40]}`.\n{HELP}"
    try:
        return await handler(svc, user, arg.strip(), cmd)
    except NotAllowed:
        return NOT_YOURS
    except TaskNotFound:
        return "I can't find that task."
    except CoworkerError as exc:
        return exc.user_message


async def handle_command(
    ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: dict[str, Any]
) -> None:
    await ack()
    reply = await run_command(
        services(context), command.get("user_id", ""), command.get("text") or "", command
    )
    # response_url is a plain webhook, not the Web API client that makes what it posts safe.
    if isinstance(reply, Blocks):
        await respond(
            text=outgoing(reply.text), blocks=outgoing(reply.blocks), response_type="ephemeral"
        )
    else:
        await respond(text=outgoing(reply), response_type="ephemeral")


def register(app: AsyncApp) -> None:
    app.command("/coworker")(handle_command)
