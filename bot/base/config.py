"""`coworker.toml`: typed, optional configuration.

Every key is optional. Models forbid unknown keys, so a typo is an error that names the file
and the dotted key (`coworker.toml: approvals.timout: unknown key`) instead of being ignored.
Durations are written like "4h", "30s", "0.2s" or "15m" and stored as seconds.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bot.base.errors import ConfigError

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


class ApprovalsConfig(_Section):
    timeout: Duration = 4 * 3600
    escalate_to: list[str] = []
    approvers: list[str] = []
    sweep_interval: Duration = 30


class PolicyConfig(_Section):
    default: Tier = "block"
    tools: dict[str, Tier] = {}
    #: write tools that must be called in dry-run mode first: glob -> argument name
    dry_run: dict[str, str] = {}


class Role(_Section):
    members: list[str] = []  # Slack user ids (U…) or user group ids (S…)
    tools: list[str] = []
    admin: bool = False


class CoworkerConfig(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    description: str = ""
    system_prompt: str = ""
    tools: list[str] = ["*"]
    models: dict[str, str] = {}  # purpose or tier -> model id or tier name
    budget_usd: float | None = Field(default=None, gt=0)


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

    def price(self, model: str) -> Price | None:
        return self.prices.get(model) or DEFAULT_PRICES.get(model)

    def coworker(self, name: str) -> CoworkerConfig | None:
        return next((c for c in self.coworkers if c.name == name), None)

    def project_for(self, channel: str | None) -> str | None:
        return self.projects.get(channel) if channel else None


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        else:
            parts.append(str(p))
    return ".".join(parts)


def parse_config(data: dict[str, Any], *, path: str = "coworker.toml") -> Config:
    """Validate a parsed TOML document; raise `ConfigError` naming the first bad key."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _dotted(err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{path}: {key}: {msg}", path=path, key=key) from None


def load_config(path: Path) -> Config:
    """Load `coworker.toml`; a missing file means all defaults."""
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text)", path=str(path)) from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from None
    return parse_config(data, path=str(path))
