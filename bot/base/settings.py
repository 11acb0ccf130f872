"""Environment settings (pydantic-settings; a `.env` file works too).

These are the operator-facing variables of DESIGN.md. Secrets are `SecretStr` so they never
print in logs or reprs. `load_settings()` turns validation problems into one `SettingsError`
naming the variable, which the CLI prints as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.base.errors import SettingsError
from bot.base.plain import plain

SETUP_HINT = "see README.md, section 'Set up the Slack app'"
CONFIGURATION_HINT = "see README.md, section 'Configuration'"


def hint(variable: str) -> str:
    """Where the README explains `variable`."""
    return SETUP_HINT if variable.startswith("SLACK_") else CONFIGURATION_HINT


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    database_url: str = "sqlite:///./coworker.db"
    coworker_config: Path = Path("./coworker.toml")
    coworker_mcp_config: Path = Path("./.mcp.json")
    #: 0 picks a free port (tests); `PUBLIC_URL` then follows the port bound.
    port: int = Field(default=3000, ge=0, le=65535)
    public_url: str | None = None
    coworker_secret_key: SecretStr | None = None
    otel_exporter_otlp_endpoint: str | None = None
    voyage_api_key: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """A variable set to "" or spaces counts as unset: its default applies.

        `SLACK_APP_TOKEN=` (a line left empty in .env or a compose file) would otherwise
        mean Socket Mode with an empty token.
        """
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    @field_validator("database_url")
    @classmethod
    def _sqlite_only(cls, v: str) -> str:
        if not v.startswith("sqlite:///"):
            raise ValueError(
                "must look like sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        url = urlsplit(v)
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError("must be an http(s) URL such as https://coworker.example.com")
        return v.rstrip("/")

    def public_base(self, port: int | None = None) -> str:
        """The URL people's browsers reach the listener at (`port`: the one bound)."""
        return self.public_url or f"http://127.0.0.1:{port or self.port}"

    @property
    def database_path(self) -> str:
        """The file path inside `DATABASE_URL`."""
        return self.database_url.removeprefix("sqlite:///")

    def named(self, field: str) -> bool:
        """Whether `field` was set explicitly (by its variable), not left to its default."""
        return field in self.model_fields_set

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def require_slack(self) -> None:
        """Raise `SettingsError` naming the first missing variable needed to connect to Slack."""
        if self.slack_bot_token is None:
            raise SettingsError(
                f"SLACK_BOT_TOKEN is not set ({SETUP_HINT})", variable="SLACK_BOT_TOKEN"
            )
        if not self.socket_mode and self.slack_signing_secret is None:
            raise SettingsError(
                "SLACK_SIGNING_SECRET is not set; HTTP mode needs it "
                f"(or set SLACK_APP_TOKEN for Socket Mode; {SETUP_HINT})",
                variable="SLACK_SIGNING_SECRET",
            )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and `.env`; raise `SettingsError` on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        name, problem = next(iter(_problems(exc).items()))
        raise SettingsError(f"{name}: {problem} ({hint(name)})", variable=name) from None


def read_settings() -> tuple[Settings, dict[str, str]]:
    """Settings and each bad variable's problem; a bad variable takes its default.

    For `doctor`, which reports every variable, the bad ones included.
    """
    try:
        return Settings(), {}
    except ValidationError as exc:
        problems = _problems(exc)
    fields = Settings.model_fields
    defaults = {n.lower(): fields[n.lower()].default for n in problems if n.lower() in fields}
    return Settings(**defaults), problems


def _problems(exc: ValidationError) -> dict[str, str]:
    problems: dict[str, str] = {}
    for err in exc.errors():
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        problems.setdefault(name, plain(err))
    return problems
