"""Who may see which task: the person who delegated it, the members of its channel, admins.

A task started in a channel is visible to the people in that channel (asked of Slack through
the `Directory`, which caches the answer); one started in a DM only to the person who
started it; every task to members of a `[roles.*]` with `admin = true`. `/coworker tasks`,
`/coworker status`, `/coworker report` and the App Home all ask here, so a request, its
event log and its calls reach no one else. The operator's `python -m bot report` on the
server is not a Slack surface and stays unrestricted.
"""

from __future__ import annotations

from bot.approvals import Directory
from bot.base.config import Config
from bot.tasks import Task


async def is_admin(config: Config, directory: Directory, user: str) -> bool:
    """Whether `user` is in a `[roles.*]` with `admin = true` (directly or by user group)."""
    admin_roles = [role for role in config.roles.values() if role.admin]
    if any(user in role.members for role in admin_roles):
        return True
    groups = {m for role in admin_roles for m in role.members if m.startswith("S")}
    return bool(groups) and bool(groups & await directory.groups_of(user))


def in_dm(task: Task) -> bool:
    """Whether the task was started in a direct message with the bot."""
    return task.channel.startswith("D")


class Visibility:
    """Answers "may this person see this task?" for every Slack surface."""

    def __init__(self, config: Config, directory: Directory) -> None:
        self.config = config
        self.directory = directory

    async def may_see(self, task: Task, user: str) -> bool:
        if user == task.delegator or await is_admin(self.config, self.directory, user):
            return True
        return not in_dm(task) and await self.directory.in_channel(user, task.channel)

    async def visible(self, tasks: list[Task], user: str, *, limit: int) -> list[Task]:
        """The first `limit` of `tasks` that `user` may see."""
        if await is_admin(self.config, self.directory, user):
            return tasks[:limit]
        seen: list[Task] = []
        for task in tasks:
            if len(seen) == limit:
                break
            if await self.may_see(task, user):
                seen.append(task)
        return seen
