"""Composition: the one function that builds and wires every concrete part.

`build()` reads settings and config, checks the bot token with Slack, opens and migrates
the database, makes the Anthropic client, starts the MCP gateway, and connects the core
services to the Slack adapter; if any of it fails, what was already opened is closed, so
the process can exit. `Coworker.serve_forever()` then connects to Slack (Socket Mode or
HTTP) and runs until SIGTERM or SIGINT, then shuts down gracefully. Tests call `build()`
with stand-in URLs and drive the same object.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import telemetry
from bot.agent import AgentLoop
from bot.approvals import ApprovalService
from bot.base.config import Config, load_config
from bot.base.db import Database, open_database
from bot.base.errors import SettingsError, Unreachable
from bot.base.migrations import migrate
from bot.base.secretbox import token_box
from bot.base.settings import Settings
from bot.connections import Connections
from bot.delegation import Delegation
from bot.delivery import SWEEP_SECONDS, Delivery
from bot.inbox import PRUNE_SECONDS, Inbox
from bot.intake import Intake
from bot.lifecycle import TaskWork
from bot.llm import LLM, make_client
from bot.orchestration import Orchestrator
from bot.planner import Planner
from bot.runner import TaskRunner
from bot.scheduler import guarded, make_scheduler
from bot.tasks import TaskStore
from bot.team_memory import TeamMemory
from bot.toolbox import Toolbox
from bot.validation import Validator
from handlers import oauth, register_handlers
from handlers.directory import SlackDirectory
from handlers.notifier import SlackNotifier
from handlers.services import HomeSection
from handlers.slack_app import health_app, http_app, make_app, socket_mode
from handlers.slack_app import make_client as make_slack_client
from handlers.slack_app import open_session as open_slack_session
from memory import MemoryStore, load_embedder
from tools.builtin.memory import memory_server
from tools.builtin.slack import slack_server
from tools.gateway import McpGateway
from tools.mcp_config import load_mcp_config

if TYPE_CHECKING:  # the cluster needs psycopg, which only PostgreSQL installs have
    from bot.cluster.replica import Replica

log = logging.getLogger(__name__)

#: how often the leader embeds memories left without a vector (each replica embeds its own
#: writes at once; this catches those of a replica that stopped first)
EMBED_SECONDS = 30
#: how often the leader works out missing and old hubness terms (`memory.hubness`)
HUBNESS_SECONDS = 120
#: how long a memory must have been left so before the sweep takes it from its writer
EMBED_SETTLED = 120.0


@dataclass
class Coworker:
    """Every wired service; what handlers find in `context["coworker"]`."""

    settings: Settings
    config: Config
    db: Database
    slack: AsyncWebClient
    app: AsyncApp
    llm: LLM
    gateway: McpGateway
    tasks: TaskStore
    approvals: ApprovalService
    runner: TaskRunner
    delegation: Delegation
    notifier: SlackNotifier
    directory: SlackDirectory
    memory: TeamMemory
    connections: Connections
    team_id: str | None = None
    bot_user_id: str | None = None
    home_sections: list[HomeSection] = field(default_factory=list)
    delivery: Delivery | None = None
    public_url: PublicUrl | None = None
    scheduler: Any = None
    #: this process as one replica among several (PostgreSQL); None on SQLite
    replica: Replica | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    _socket: Any = None
    _site: Any = None
    _runner_http: Any = None

    async def start(self) -> None:
        """Start background work: the runner and the scheduled jobs. With replicas, the
        jobs that must run once (`once()`) run on the leader only."""
        if self.replica is not None:
            await self.replica.start()
        await self.runner.start()
        await self.delegation.replay_inbox()
        self.scheduler = make_scheduler()
        once = self.once
        self.scheduler.add_job(
            guarded("approval_sweep", self.approvals.sweep),
            "interval",
            seconds=self.config.approvals.sweep_interval,
        )
        if self.delegation.inbox is not None:
            self.scheduler.add_job(
                once("inbox_prune", self.delegation.inbox.prune), "interval", seconds=PRUNE_SECONDS
            )
        if self.replica is not None:  # messages of a replica that died mid-intake: any replica
            self.scheduler.add_job(
                guarded("inbox_replay", self.delegation.replay_inbox),
                "interval",
                seconds=self.config.cluster.lease,
            )
        if self.delivery is not None:  # at start (Slack may have refused one), then often
            self.scheduler.add_job(
                once("delivery_sweep", self.delivery.sweep),
                "interval",
                seconds=SWEEP_SECONDS,
                next_run_time=datetime.now(),
            )
        if self.memory is not None:
            jobs = self.memory_jobs()
            self.scheduler.add_job(jobs["consolidate"], "cron", hour=3, minute=0)
            self.scheduler.add_job(jobs["decay"], "cron", day_of_week="sun", hour=4)
            self.scheduler.add_job(jobs["backup"], "cron", hour=2, minute=30)
            store = self.memory.store
            if await store.prepare() and self.leads():
                job = asyncio.create_task(store.reembed_all(), name="reembed")
                self.background.add(job)
                job.add_done_callback(self.background.discard)
            if self.replica is not None:  # what a replica that stopped had yet to embed

                async def memory_embed() -> None:
                    await store.reembed_all(settled_for=EMBED_SETTLED)

                self.scheduler.add_job(
                    once("memory_embed", memory_embed), "interval", seconds=EMBED_SECONDS
                )
            self.scheduler.add_job(
                once("memory_hubness", store.refresh_hubness), "interval", seconds=HUBNESS_SECONDS
            )
        self.scheduler.start()

    def leads(self) -> bool:
        """Whether once-only work runs here: always in one process, else on the leader."""
        return self.replica is None or self.replica.leader.is_leader

    def once(self, name: str, job: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """A scheduled job that must run once across replicas: on the leader only."""
        if self.replica is not None:
            job = self.replica.leader.only_on_leader(name, job)
        return guarded(name, job)

    def memory_jobs(self) -> dict[str, Any]:
        assert self.memory is not None
        memory = self.memory

        async def consolidate() -> None:
            await self.notifier.facts_proposed(await memory.consolidate())

        return {
            "consolidate": self.once("memory_consolidation", consolidate),
            "decay": self.once("memory_decay", memory.decay),
            "backup": self.once("nightly_backup", memory.backup),
        }

    async def connect(self) -> None:
        """Connect to Slack: Socket Mode with an app token, else HTTP on PORT. The HTTP
        listener also serves `/oauth/*` (in Socket Mode too, when there are per-user
        servers: their sign-in comes back to it)."""
        if self.settings.slack_app_token is not None:
            self._socket = await connect_socket_mode(
                self.app, self.settings.slack_app_token.get_secret_value()
            )
            log.info("connected to Slack over Socket Mode")
        web_app = self.web_app()
        if web_app is None:
            return
        self._runner_http = web.AppRunner(web_app)
        await self._runner_http.setup()
        self._site = web.TCPSite(self._runner_http, "0.0.0.0", self.settings.port)
        try:
            await self._site.start()
        except OSError as exc:  # in use, or a privileged port
            raise SettingsError(
                f"cannot listen on PORT {self.settings.port}: {reason(exc)}", variable="PORT"
            ) from None
        port = self._runner_http.addresses[0][1]
        if self.public_url is not None:
            self.public_url.port = port
        what = "OAuth callbacks" if self.settings.socket_mode else "Slack"
        log.info("listening for %s on :%s", what, port)

    def web_app(self) -> web.Application | None:
        """What the HTTP listener serves: Slack's requests in HTTP mode, OAuth callbacks
        whenever there are per-user servers; None when there is nothing to serve."""
        if not self.settings.socket_mode:
            web_app = http_app(self.app, self.healthy)
        elif self.gateway.personal:
            web_app = health_app(self.healthy)
        else:
            return None
        oauth.add_routes(web_app, self)
        return web_app

    async def healthy(self) -> bool:
        try:
            await self.db.fetchval("SELECT 1")
            await self.slack.auth_test()
        except (SlackApiError, OSError) as exc:
            log.warning("health check failed: %s", type(exc).__name__)
            return False
        return True

    async def stop(self, grace: float = 0.0) -> None:
        """Disconnect, stop work, close everything.

        Running tasks get `grace` seconds to reach their next checkpoint; whatever is still
        running then is interrupted. Either way it resumes from its checkpoint at the next
        start.
        """
        if self._socket is not None:
            await self._socket.close_async()
        if self._runner_http is not None:
            await self._runner_http.cleanup()
        await self.delegation.inflight.drain()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.runner.stop(grace)
        if self.replica is not None:  # what is still held goes back to the queue for others
            await self.replica.stop()
        await telemetry.close()
        await self.notifier.close()
        await self.gateway.stop()
        if self.slack.session is not None:
            await self.slack.session.close()
        await self.llm.client.close()
        if self.delegation.inbox is not None:
            self.delegation.inbox.close()
        if self.memory is not None:
            await self.memory.store.close()
        await self.db.close()

    async def serve_forever(self) -> None:
        """Work until SIGTERM or SIGINT, then stop taking work and shut down gracefully."""
        stopping = asyncio.Event()
        signals = (signal.SIGTERM, signal.SIGINT)
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, shutdown_requested, sig, stopping)
        try:
            await self.start()
            await self.connect()
            # Everything built so far lives as long as the process: keep it out of the cyclic
            # collector's generations, so collections stay short and do not stall acks.
            gc.freeze()
            await stopping.wait()
        finally:
            await self.stop(self.config.runner.shutdown_grace if stopping.is_set() else 0.0)
            for sig in signals:
                loop.remove_signal_handler(sig)
        log.info("shut down")


def shutdown_requested(sig: signal.Signals, stopping: asyncio.Event) -> None:
    if stopping.is_set():
        log.info("%s: already shutting down", sig.name)
        return
    log.info("%s: shutting down (running tasks stop at their next checkpoint)", sig.name)
    stopping.set()


def reason(exc: BaseException) -> str:
    """What went wrong, in a few words: "connection refused", "address already in use"."""
    errno = getattr(exc, "errno", None)
    return os.strerror(errno).lower() if isinstance(errno, int) else type(exc).__name__


def unreachable(service: str, url: str, exc: BaseException) -> Unreachable:
    """A one-line error for a service that could not be reached (no traceback, no token)."""
    return Unreachable(f"cannot reach {service} at {url} ({reason(exc)})", service=service.lower())


async def connect_socket_mode(app: AsyncApp, app_token: str) -> Any:
    """Open the Socket Mode connection; a refused token or no answer is a one-line error."""
    try:
        return await socket_mode(app, app_token)
    except SlackApiError as exc:
        raise SettingsError(
            f"Slack rejected SLACK_APP_TOKEN ({exc.response.get('error')})",
            variable="SLACK_APP_TOKEN",
        ) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise unreachable("Slack", str(app.client.base_url), exc) from None


@dataclass
class PublicUrl:
    """`PUBLIC_URL`, or the listener's own address once it knows its port."""

    settings: Settings
    port: int | None = None

    def __call__(self) -> str:
        return self.settings.public_base(self.port)


def inbox_for(db: Database) -> Inbox | None:
    """The inbox file beside the database file (none for an in-memory database)."""
    if db.path is None or db.path == ":memory:":
        return None
    return Inbox(Path(db.path).with_name(Path(db.path).name + ".inbox.jsonl"), db)


async def identify(client: AsyncWebClient) -> tuple[str | None, str | None]:
    """The bot's user id and team id from `auth.test`; a rejected token is a settings error."""
    try:
        resp = await client.auth_test()
    except SlackApiError as exc:
        raise SettingsError(
            f"Slack rejected SLACK_BOT_TOKEN ({exc.response.get('error')})",
            variable="SLACK_BOT_TOKEN",
        ) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise unreachable("Slack", client.base_url, exc) from None
    return resp.get("user_id"), resp.get("team_id")


def build_memory(config: Config, db: Database, llm: LLM, tasks: TaskStore) -> TeamMemory:
    """The memory store with the configured embeddings (keyword-only if they cannot load)."""
    embedder, warning = load_embedder(config.memory, os.environ)
    if warning:
        log.warning("%s", warning)
    # embed_later: a finished task's runner stores its episode and goes; the vector follows.
    store = MemoryStore(db, embedder, config.memory, embed_later=True)
    return TeamMemory(store, llm, tasks, config, warning=warning)


def make_runner(
    db: Database, config: Config, tasks: TaskStore
) -> tuple[Replica | None, TaskRunner]:
    """The task runner: one process on SQLite; on PostgreSQL, one replica among several,
    claiming under leases and waking the others through the database."""
    concurrency, fanout = config.runner.concurrency, config.orchestration.fanout_concurrency
    if db.engine != "postgres":
        return None, TaskRunner(db, tasks=tasks, concurrency=concurrency, fanout=fanout)
    from bot.cluster.runner import replica_runner

    return replica_runner(db, config, tasks)


def busy_check(
    runner: TaskRunner, replica: Replica | None
) -> Callable[[int], Awaitable[bool] | bool]:
    """Whether a job works on a task now: here, or (replicas) on any replica holding its lease."""
    if replica is None:
        return lambda task_id: task_id in runner.active
    return replica.leases.held


async def build(settings: Settings) -> Coworker:
    """Build and wire every part; nothing connects to Slack until `connect()`.

    If a part fails, the parts already opened are closed (the database's thread would
    otherwise keep the process alive after the error).
    """
    async with AsyncExitStack() as opened:
        coworker = await _build(settings, opened)
        opened.pop_all()
        return coworker


async def _build(settings: Settings, opened: AsyncExitStack) -> Coworker:
    settings.require_slack()
    config = load_config(settings.coworker_config, required=settings.named("coworker_config"))
    specs = load_mcp_config(
        settings.coworker_mcp_config, required=settings.named("coworker_mcp_config")
    )
    assert settings.slack_bot_token is not None
    session = open_slack_session()
    opened.push_async_callback(session.close)
    slack = make_slack_client(
        settings.slack_bot_token.get_secret_value(), settings.slack_api_url, session=session
    )
    bot_user_id, team_id = await identify(slack)  # before anything is opened or migrated
    telemetry.setup(settings.otel_exporter_otlp_endpoint)
    opened.push_async_callback(telemetry.close)
    db = await open_database(settings.database_url)
    opened.push_async_callback(db.close)
    await db.claim_process()  # SQLite: one bot per file (PostgreSQL: replicas welcome)
    await migrate(db)
    secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    )
    app = make_app(slack, None if settings.socket_mode else secret)
    api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    client = make_client(
        api_key,
        settings.anthropic_base_url,
        max_retries=config.runner.model_retries,
        timeout=config.runner.model_timeout,
    )
    opened.push_async_callback(client.close)
    llm = LLM(client, config, db)
    tasks = TaskStore(db)
    groups = {m for role in config.roles.values() for m in role.members if m.startswith("S")}
    directory = SlackDirectory(slack, groups, bot_user_id)

    async def remember_status(task_id: int, ts: str) -> None:
        await tasks.update(task_id, status_ts=ts)

    notifier = SlackNotifier(
        slack,
        status_interval=config.runner.status_interval,
        on_status_ts=remember_status,
        reviewers=config.memory.reviewers,
    )
    opened.push_async_callback(notifier.close)
    memory = build_memory(config, db, llm, tasks)
    builtin = {
        "slack": slack_server(slack),
        "memory": memory_server(memory.tool_remember, memory.tool_recall),
    }
    public_url = PublicUrl(settings)
    gateway = McpGateway(
        specs, config, db, builtin=builtin, box=token_box(settings), public_base=public_url
    )
    opened.push_async_callback(gateway.stop)
    await gateway.start()
    replica, runner = make_runner(db, config, tasks)
    orchestrator = Orchestrator(tasks, config, notifier, runner.wake)
    approvals = ApprovalService(
        db,
        tasks,
        config,
        notifier,
        directory,
        runner.wake,
        subtask_finished=orchestrator.child_finished,
    )
    connections = Connections(db, tasks, gateway, notifier, runner.wake)
    toolbox = Toolbox(
        gateway,
        approvals,
        notifier,
        directory,
        config,
        orchestrator,
        tasks=tasks,
        connections=connections,
    )
    agent = AgentLoop(
        db=db,
        tasks=tasks,
        llm=llm,
        toolbox=toolbox,
        approvals=approvals,
        notifier=notifier,
        config=config,
        between_steps=runner.at_checkpoint,
    )
    delivery = Delivery(tasks, notifier, busy=busy_check(runner, replica))
    runner.work = TaskWork(
        tasks=tasks,
        planner=Planner(llm, config),
        agent=agent,
        toolbox=toolbox,
        approvals=approvals,
        notifier=notifier,
        config=config,
        orchestrator=orchestrator,
        validator=Validator(llm, config),
        memory=memory,
        delivery=delivery,
    )
    delegation = Delegation(
        tasks=tasks,
        intake=Intake(tasks, config),
        approvals=approvals,
        runner=runner,
        notifier=notifier,
        directory=directory,
        config=config,
        memory=memory,
        inbox=replica.inbox if replica is not None else inbox_for(db),
        orchestrator=orchestrator,
    )
    coworker = Coworker(
        settings=settings,
        config=config,
        db=db,
        slack=slack,
        app=app,
        llm=llm,
        gateway=gateway,
        tasks=tasks,
        approvals=approvals,
        runner=runner,
        delegation=delegation,
        notifier=notifier,
        directory=directory,
        team_id=team_id,
        bot_user_id=bot_user_id,
        memory=memory,
        delivery=delivery,
        connections=connections,
        public_url=public_url,
        replica=replica,
    )
    register_handlers(app, coworker)
    return coworker
