"""Errors Coworker raises on purpose, and what they carry.

    CoworkerError
    ├── SettingsError          a required environment variable is missing or bad
    ├── ConfigError            coworker.toml or .mcp.json is wrong (names file and key)
    ├── MigrationError         a migration failed; the database is left as it was
    ├── Unreachable            a service (Slack, the database) cannot be reached or opened
    │   └── DatabaseUnavailable  the database cannot be reached or cannot serve (says what to do)
    ├── AlreadyRunning         another bot process serves this SQLite file
    ├── BackupUnsupported      this engine is backed up with its own tools (pg_dump)
    ├── TaskNotFound           no task with that id
    ├── NotAllowed             this person may not do that (approve, edit, cancel)
    ├── StalePlan              a button of a plan that a revised one replaced
    ├── BudgetExhausted        the task spent its budget
    ├── LLMUnavailable         the model API failed after retries
    ├── ToolError              a tool call could not be made
    │   ├── ToolDenied         the task may not use this tool
    │   ├── ToolInvalid        arguments do not match the tool's input schema
    │   └── ToolUnavailable    the server is down or its circuit breaker is open
    ├── SecretUnreadable       a value sealed at rest that no configured key opens
    ├── ConnectionNeeded       a per-user MCP server needs this person to connect (again)
    ├── ConnectFailed          connecting a person to a per-user server did not work
    ├── EmbeddingUnavailable   (memory.errors) the embeddings provider failed; keyword-only
    └── BackupFailed           a database backup failed its check (nothing is left behind)

Context travels in keyword-only fields so that the edge (a Slack handler, the CLI) can
build a short, safe message without showing `str(exception)` to users.
"""

from __future__ import annotations


class CoworkerError(Exception):
    """Base of every error Coworker raises deliberately."""

    #: A short sentence that is safe to show a Slack user.
    user_message = "Something went wrong on my side."


class SettingsError(CoworkerError):
    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class ConfigError(CoworkerError):
    def __init__(self, message: str, *, path: str, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class MigrationError(CoworkerError):
    def __init__(self, message: str, *, migration: str) -> None:
        super().__init__(message)
        self.migration = migration


class Unreachable(CoworkerError):
    """A service the bot needs cannot be reached (or its file opened); nothing was changed."""

    def __init__(self, message: str, *, service: str) -> None:
        super().__init__(message)
        self.service = service


class TaskNotFound(CoworkerError):
    user_message = "I can't find that task."

    def __init__(self, *, task_id: int | str) -> None:
        super().__init__(f"no task T-{task_id}")
        self.task_id = task_id


class NotAllowed(CoworkerError):
    user_message = "That isn't yours to decide."

    def __init__(self, *, user: str, action: str) -> None:
        super().__init__(f"{user} may not {action}")
        self.user = user
        self.action = action


class StalePlan(CoworkerError):
    user_message = "A revised plan replaced this one: use the buttons on the latest plan."

    def __init__(self, *, task_id: int) -> None:
        super().__init__(f"a replaced plan of task {task_id}")
        self.task_id = task_id


class BudgetExhausted(CoworkerError):
    user_message = "This task has used its budget."

    def __init__(self, *, task_id: int, spent_usd: float, budget_usd: float) -> None:
        super().__init__(f"task {task_id} spent ${spent_usd:.2f} of ${budget_usd:.2f}")
        self.task_id = task_id
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd


class LLMUnavailable(CoworkerError):
    user_message = "The model API is not answering right now."

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        model: str | None = None,
        retryable: bool = True,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        #: The HTTP status of the API's answer; None when none came (unreachable, timed out).
        self.status = status
        self.model = model
        #: Whether the client retried it (overloaded, rate limits, 5xx, the network), so
        #: the same request may pass later; a 400 or 404 was sent once and will not.
        self.retryable = retryable
        self.timed_out = timed_out


class ToolError(CoworkerError):
    user_message = "A tool call failed."

    def __init__(self, message: str, *, tool: str) -> None:
        super().__init__(message)
        self.tool = tool


class ToolDenied(ToolError):
    def __init__(self, *, tool: str, reason: str) -> None:
        super().__init__(f"{tool}: {reason}", tool=tool)
        self.reason = reason


class ToolInvalid(ToolError):
    def __init__(self, *, tool: str, problems: list[str]) -> None:
        super().__init__(f"{tool}: invalid arguments: " + "; ".join(problems), tool=tool)
        self.problems = problems


class ToolUnavailable(ToolError):
    def __init__(self, *, tool: str, reason: str) -> None:
        super().__init__(f"{tool} is unavailable: {reason}", tool=tool)
        self.reason = reason


class SecretUnreadable(CoworkerError):
    """A value sealed at rest that none of `COWORKER_SECRET_KEY`'s keys opens."""

    def __init__(self) -> None:
        super().__init__("a sealed value could not be opened with the configured keys")


class ConnectionNeeded(CoworkerError):
    user_message = "You need to connect your account to that tool first."

    def __init__(self, *, server: str, user: str, reconnect: bool = False) -> None:
        verb = "reconnect" if reconnect else "connect"
        super().__init__(f"{user} needs to {verb} {server}")
        self.server = server
        self.user = user
        self.reconnect = reconnect


class ConnectFailed(CoworkerError):
    user_message = "Connecting to that tool did not work."

    def __init__(self, message: str, *, server: str, reason: str) -> None:
        super().__init__(message)
        self.server = server
        #: A short, secret-free sentence for the person (a page, the thread).
        self.reason = reason


class DatabaseUnavailable(Unreachable):
    """The database cannot be used: unreachable, too old, or missing what Coworker needs."""

    def __init__(self, message: str, *, engine: str) -> None:
        super().__init__(message, service="database")
        self.engine = engine


class AlreadyRunning(CoworkerError):
    """A second `python -m bot` on a database engine that serves one process (SQLite)."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class BackupUnsupported(CoworkerError):
    """`backup` on an engine whose backups are made with its own tools."""

    def __init__(self, message: str, *, engine: str) -> None:
        super().__init__(message)
        self.engine = engine


class BackupFailed(CoworkerError):
    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path
