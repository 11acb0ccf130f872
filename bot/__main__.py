"""`python -m bot`: run the bot, or `doctor`, `migrate`, `report`, `backup`, `memory`.

Operator errors (a missing variable, a bad config key, a usage error) print one line and
exit 2; other failures (Slack or the database out of reach) one line and exit 1; no
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import NoReturn

from bot import logs, memory_cli
from bot.base.errors import ConfigError, CoworkerError, MigrationError, SettingsError
from bot.base.settings import load_settings

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and exit status 2), like every CLI error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def not_blank(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def task_ref(value: str) -> str:
    from bot.tasks import parse_task_ref

    if parse_task_ref(value) is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a task reference (like T-42)")
    return value


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m bot", description="Coworker: a Slack-native AI coworker.")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("run", help="connect to Slack and work (the default)")
    sub.add_parser("doctor", help="check settings, Slack, Anthropic, the database and MCP servers")
    sub.add_parser("migrate", help="apply pending database migrations")
    report = sub.add_parser("report", help="costs and outcomes of recent tasks")
    report.add_argument(
        "--days", type=at_least_one, default=7, help="how many days back to look (default 7)"
    )
    report.add_argument("--task", type=task_ref, help="one task's calls step by step, e.g. T-42")
    backup = sub.add_parser("backup", help="copy the database consistently while the bot runs")
    backup.add_argument(
        "path",
        type=not_blank,
        help="the file to write, or a folder to write coworker-YYYYmmdd-HHMMSS.db in",
    )
    memory = sub.add_parser("memory", help="memory jobs, import and search")
    memory_actions = memory.add_subparsers(dest="action", required=True)
    memory_actions.add_parser(
        "consolidate", help="propose facts from recent tasks for review in Slack"
    )
    memory_actions.add_parser("decay", help="archive memories nobody used for long")
    memory_cli.add_parsers(memory_actions)
    return p


async def run_command(args: argparse.Namespace) -> int:
    if args.command == "doctor":  # reads the settings itself, to report every bad one
        from bot.doctor import doctor

        return await doctor()
    settings = load_settings()
    if args.command in (None, "run"):
        settings.require_slack()
        from bot.app import build

        coworker = await build(settings)
        await coworker.serve_forever()
        return 0
    if args.command == "memory" and args.action in ("import", "search"):
        return await memory_cli.run(args, settings)
    from bot import cli

    return await cli.dispatch(args, settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup()
    try:
        return asyncio.run(run_command(args))
    except (SettingsError, ConfigError, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CoworkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
