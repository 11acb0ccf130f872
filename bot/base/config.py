"""`coworker.toml`: typed, optional configuration.

Every key is optional. Models forbid unknown keys, so a typo is an error that names the file
and the dotted key (`coworker.toml: approvals.timout: unknown key (did you mean
'timeout'?)`) instead of being ignored, and every error is a plain sentence
(`bot.base.plain`). Values that would be silently useless are refused too: a tool glob that
is empty or has a '[' without its ']', a role member that is not a Slack id, a coworker's
`models` key that is neither a purpose nor a tier, two coworkers with one name.
Durations are written like "4h", "30s", "0.2s" or "15m" and stored as seconds.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from bot.base.errors import ConfigError
from bot.base.plain import offending_line, plain

Tier = Literal["auto", "notify", "block"]
ModelTier = Literal["fast", "default", "best"]
Purpose = Literal[
    "classify",
    "route",
    "extract",
    "plan",
    "act",
    "review",
    "summarize",
    "final_draft",
    "consolidate",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: object) -> float:
    """Seconds from "4h", "30s", "250ms", or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    raise ValueError("expected a duration such as '30s', '15m' or '4h'")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


def _glob(pattern: str) -> str:
    """A glob over `SERVER__TOOL` names: not empty, every '[' closed (else it matches nothing)."""
    if not pattern.strip():
        raise ValueError("a tool pattern must not be empty")
    inside = False
    for char in pattern:
        if char == "[" and not inside:
            inside = True
        elif char == "]":
            if not inside:
                raise ValueError(f"{pattern!r} has a ']' without its '['")
            inside = False
    if inside:
        raise ValueError(f"{pattern!r} has a '[' without its ']'")
    return pattern


def _slack_member(member: str) -> str:
    if not re.fullmatch(r"[UWS][A-Z0-9_]+", member):  # "_" only for readable test ids
        raise ValueError(
            f"{member!r} is not a Slack user id (U…, W…) or user group id (S…); "
            "copy it from the person's or group's profile"
        )
    return member


def _coworker_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name):
        raise ValueError(
            "must be 1-32 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


Glob = Annotated[str, AfterValidator(_glob)]
SlackMember = Annotated[str, AfterValidator(_slack_member)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsConfig(_Section):
    fast: str = "claude-haiku-5-5"
    default: str = "claude-sonnet-5-5"
    best: str = "claude-opus-5-5"


class Price(_Section):
    """Dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float = Field(ge=0)
    cache_read: float = Field(ge=0)


DEFAULT_PRICES: dict[str, Price] = {
    "claude-haiku-5-5": Price(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10),
    "claude-sonnet-5-5": Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30),
    "claude-opus-5-5": Price(input=5.0, output=25.0, cache_write=6.25, cache_read=0.50),
}


class BudgetConfig(_Section):
    task_usd: float = Field(default=2.00, gt=0)
    wrap_up_at: float = Field(default=0.8, gt=0, le=1)
    #: The most a request may set with `!budget N` (default: 10 x task_usd); beyond it
    #: only an approver's top-up adds money.
    max_task_usd: float | None = Field(default=None, gt=0)

    @field_validator("max_task_usd")
    @classmethod
    def _not_below_task_usd(cls, value: float | None, info: ValidationInfo) -> float | None:
        task_usd = info.data.get("task_usd")
        if value is not None and task_usd is not None and value < task_usd:
            raise ValueError(f"must be at least task_usd ({task_usd:g})")
        return value

    @property
    def max_usd(self) -> float:
        """What `!budget` may ask for at most."""
        return self.max_task_usd if self.max_task_usd is not None else 10 * self.task_usd


class ApprovalsConfig(_Section):
    timeout: Duration = 4 * 3600
    escalate_to: list[str] = []
    approvers: list[str] = []
    sweep_interval: Duration = 30


class PolicyConfig(_Section):
    default: Tier = "block"
    tools: dict[Glob, Tier] = {}
    #: write tools that must be called in dry-run mode first: glob -> argument name
    dry_run: dict[Glob, str] = {}


class Role(_Section):
    members: list[SlackMember] = []  # Slack user ids (U…) or user group ids (S…)
    tools: list[Glob] = []
    admin: bool = False


class CoworkerConfig(_Section):
    name: Annotated[str, AfterValidator(_coworker_name)]
    description: str = ""
    system_prompt: str = ""
    tools: list[Glob] = ["*"]
    models: dict[str, str] = {}  # purpose or tier -> model id or tier name
    budget_usd: float | None = Field(default=None, gt=0)

    @field_validator("models")
    @classmethod
    def _purposes_or_tiers(cls, models: dict[str, str]) -> dict[str, str]:
        known = (*get_args(Purpose), *get_args(ModelTier))
        for key in models:
            if key not in known:
                raise ValueError(
                    f"{key!r} is neither a purpose ({', '.join(get_args(Purpose))}) "
                    f"nor a tier ({', '.join(get_args(ModelTier))})"
                )
        return models


class RunnerConfig(_Section):
    concurrency: int = Field(default=4, ge=1, le=64)
    max_steps: int = Field(default=30, ge=1)
    working_memory_tokens: int = Field(default=50_000, ge=1000)
    status_interval: Duration = 3
    max_new_tasks_per_minute: int = Field(default=10, ge=1)
    #: One Messages API request's time limit, and how often the SDK retries a failed one
    #: (429, 529, 5xx, timeouts, dropped connections) with back-off.
    model_timeout: Duration = 120
    model_retries: int = Field(default=4, ge=0, le=10)
    #: On SIGTERM/SIGINT, how long running tasks may take to reach their next checkpoint.
    shutdown_grace: Duration = 20


class GatewayServerLimits(_Section):
    max_concurrency: int = Field(default=4, ge=1)
    calls_per_minute: int | None = Field(default=None, ge=1)


class GatewayConfig(_Section):
    call_timeout: Duration = 60
    start_timeout: Duration = 20
    result_max_chars: int = Field(default=20_000, ge=100)
    audit_max_chars: int = Field(default=100_000, ge=100)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown: Duration = 60
    servers: dict[str, GatewayServerLimits] = {}


class MemoryConfig(_Section):
    embeddings: Literal["auto", "local", "fastembed", "voyage", "openai", "none", "test"] = "auto"
    embeddings_url: str | None = None
    embeddings_model: str | None = None
    embeddings_api_key_env: str = "OPENAI_API_KEY"
    # The vector search's share of relevance (the keyword search gets the rest); unset: by
    # provider, see memory/scoring.py.
    vector_weight: float | None = Field(default=None, ge=0, le=1)
    episodes: int = Field(default=10, ge=0)
    facts: int = Field(default=5, ge=0)
    token_budget: int = Field(default=4000, ge=0)
    half_life_days: float = Field(default=30, gt=0)
    archive_below: float = Field(default=0.05, ge=0)
    archive_unused_days: int = Field(default=90, ge=1)
    duplicate_similarity: float = Field(default=0.9, gt=0, le=1)
    reviewers: list[str] = []
    backup_dir: str = "./backups"
    backup_keep: int = Field(default=7, ge=1)


class CodeValidation(_Section):
    commands: list[str] = []
    timeout: Duration = 300
    workdir: str = "."


class ValidationConfig(_Section):
    code: CodeValidation = CodeValidation()
    review_rounds: int = Field(default=3, ge=0)


class OrchestrationConfig(_Section):
    max_depth: int = Field(default=3, ge=1)
    fanout_concurrency: int = Field(default=3, ge=1)
    child_failures: int = Field(default=3, ge=1)
    spend_threshold: float = Field(default=0.8, gt=0, le=1)


class ClusterConfig(_Section):
    """Replicas on PostgreSQL (README "Scale out"); SQLite runs one process and ignores it."""

    #: how long a replica's hold on a task, and on leadership, lasts without a heartbeat
    lease: Duration = Field(default=30.0, ge=3)
    #: how often a replica looks for work and news in case a NOTIFY was lost
    poll: Duration = Field(default=3.0, gt=0, le=60)


class Config(_Section):
    plan_approval: Literal["always", "never"] = "always"
    models: ModelsConfig = ModelsConfig()
    routing: dict[Purpose, ModelTier] = {}
    prices: dict[str, Price] = {}
    budget: BudgetConfig = BudgetConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    policy: PolicyConfig = PolicyConfig()
    roles: dict[str, Role] = {}
    coworkers: list[CoworkerConfig] = []
    projects: dict[str, str] = {}  # channel id -> project name
    runner: RunnerConfig = RunnerConfig()
    gateway: GatewayConfig = GatewayConfig()
    memory: MemoryConfig = MemoryConfig()
    validation: ValidationConfig = ValidationConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    cluster: ClusterConfig = ClusterConfig()

    @field_validator("coworkers")
    @classmethod
    def _unique_names(cls, coworkers: list[CoworkerConfig]) -> list[CoworkerConfig]:
        seen: set[str] = set()
        for coworker in coworkers:
            if coworker.name in seen:
                raise ValueError(f"two coworkers are named {coworker.name!r}")
            seen.add(coworker.name)
        return coworkers

    def price(self, model: str) -> Price | None:
        return self.prices.get(model) or DEFAULT_PRICES.get(model)

    def coworker(self, name: str) -> CoworkerConfig | None:
        return next((c for c in self.coworkers if c.name == name), None)

    def project_for(self, channel: str | None) -> str | None:
        return self.projects.get(channel) if channel else None


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if p == "[key]":  # pydantic's mark for an error in a dict's key rather than its value
            continue
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        else:
            parts.append(str(p))
    return ".".join(parts)


def _keys_beside(loc: tuple[Any, ...]) -> list[str]:
    """The keys the section holding `loc`'s last key accepts (for "did you mean")."""
    current: Any = Config
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = fields[part].annotation
        origin = get_origin(current)
        if origin in (list, dict):  # the item's type; skip the index or key in `loc`
            current = get_args(current)[-1]
            if parts:
                parts.pop(0)
    return list(getattr(current, "model_fields", {}))


def _problem(err: Any) -> str:
    if err["type"] != "extra_forbidden":
        return plain(err)
    near = difflib.get_close_matches(str(err["loc"][-1]), _keys_beside(err["loc"]), n=1)
    return f"unknown key (did you mean {near[0]!r}?)" if near else "unknown key"


def parse_config(data: dict[str, Any], *, path: str = "coworker.toml") -> Config:
    """Validate a parsed TOML document; raise `ConfigError` naming the first bad key."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _dotted(err["loc"])
        raise ConfigError(f"{path}: {key}: {_problem(err)}", path=path, key=key) from None


def load_config(path: Path, *, required: bool = False) -> Config:
    """Load `coworker.toml`; a missing file means all defaults, unless it is `required`
    (named explicitly by `COWORKER_CONFIG`)."""
    if not path.exists():
        if required:
            raise ConfigError(
                f"{path}: no such file (COWORKER_CONFIG names it; unset it for the defaults)",
                path=str(path),
            )
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {_toml_problem(exc, text)}", path=str(path)
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text)", path=str(path)) from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from None
    return parse_config(data, path=str(path))


def _toml_problem(exc: tomllib.TOMLDecodeError, text: str) -> str:
    where = re.search(r"\(at line (\d+), column \d+\)", str(exc))
    if where is None:
        return str(exc)
    line = offending_line(text, int(where.group(1)))
    return f"{exc}: {line}" if line else str(exc)
