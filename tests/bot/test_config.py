from pathlib import Path

import pytest

from bot.base.config import Config, load_config, parse_config, parse_duration
from bot.base.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "coworker.toml"
    path.write_text(text)
    return path


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nope.toml")
    assert config == Config()
    assert config.approvals.timeout == 4 * 3600
    assert config.plan_approval == "always"


def test_design_example_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[models]
fast = "claude-haiku-5-5"
default = "claude-sonnet-5-5"
best = "claude-opus-5-5"

[budget]
task_usd = 2.00

[approvals]
timeout = "4h"
escalate_to = ["U0123ADMIN"]
approvers = ["U0456LEAD"]

[policy]
default = "block"
[policy.tools]
"time__*" = "auto"
"github__merge_pull_request" = "block"

[[coworkers]]
name = "dev"
description = "Code review, bug triage, test coverage"
tools = ["github__*", "git__*"]
""",
    )
    config = load_config(path)
    assert config.policy.tools["time__*"] == "auto"
    assert config.coworker("dev") is not None
    assert config.coworker("dev").tools == ["github__*", "git__*"]  # type: ignore[union-attr]
    assert config.approvals.approvers == ["U0456LEAD"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[approvals]\ntimout = "4h"\n', "approvals.timout"),
        ('[approvals]\ntimeout = "soon"\n', "approvals.timeout"),
        ('[policy]\ndefault = "maybe"\n', "policy.default"),
        ("[budget]\ntask_usd = -1\n", "budget.task_usd"),
        ('[[coworkers]]\nname = "Dev Team"\n', "coworkers[0].name"),
        ('[policy.tools]\n"x__*" = "sometimes"\n', "policy.tools.x__*"),
        ("surprise = 1\n", "surprise"),
    ],
)
def test_bad_key_or_value_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_invalid_toml_is_one_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[approvals\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("4h", 14400), ("30s", 30), ("0.2s", 0.2), ("15m", 900), (5, 5), ("250ms", 0.25)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[[coworkers]]\nname = "dev"\nmodels = { actt = "best" }\n',
            "coworkers[0].models: 'actt' is neither a purpose (classify, route, extract, plan, "
            "act, review, summarize, final_draft, consolidate) nor a tier (fast, default, best)",
        ),
        (
            '[[coworkers]]\nname = "dev"\n[[coworkers]]\nname = "dev"\n',
            "coworkers: two coworkers are named 'dev'",
        ),
        (
            '[roles.eng]\nmembers = ["alice"]\n',
            "roles.eng.members[0]: 'alice' is not a Slack user id (U…, W…) or user group id "
            "(S…); copy it from the person's or group's profile",
        ),
        (
            '[[coworkers]]\nname = "dev"\ntools = [""]\n',
            "coworkers[0].tools[0]: a tool pattern must not be empty",
        ),
        (
            '[policy.tools]\n"github__[abc" = "auto"\n',
            "policy.tools.github__[abc: 'github__[abc' has a '[' without its ']'",
        ),
        (
            '[roles.eng]\ntools = ["time__]x"]\n',
            "roles.eng.tools[0]: 'time__]x' has a ']' without its '['",
        ),
        (
            '[[coworkers]]\nname = "Dev Team"\n',
            "coworkers[0].name: must be 1-32 lowercase letters, digits, '-' or '_', starting "
            "with a letter or digit",
        ),
        ('[approvals]\ntimout = "4h"\n', "approvals.timout: unknown key (did you mean 'timeout'?)"),
        ("[budget]\ntask_usd = -1\n", "budget.task_usd: must be greater than 0"),
        ('[policy]\ndefault = "maybe"\n', "policy.default: must be 'auto', 'notify' or 'block'"),
        ('[runner]\nconcurrency = "four"\n', "runner.concurrency: must be a whole number"),
        ("[runner]\nconcurrency = 100\n", "runner.concurrency: must be at most 64"),
        (
            '[approvals]\ntimeout = "soon"\n',
            "approvals.timeout: expected a duration such as '30s', '15m' or '4h'",
        ),
    ],
)
def test_config_that_would_be_useless_is_refused_in_plain_words(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {problem}"


def test_a_config_file_named_explicitly_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert load_config(missing) == Config()  # the default path may be absent
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file \(COWORKER_CONFIG names it"):
        load_config(missing, required=True)


def test_invalid_toml_shows_the_offending_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[approvals]\ntimeout = "4h\nescalate_to = []\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "(at line 2, column" in str(info.value)
    assert str(info.value).endswith(': timeout = "4h')


def test_max_task_usd_defaults_to_ten_task_budgets_and_is_never_below_one() -> None:
    assert Config().budget.max_usd == 20.0
    assert parse_config({"budget": {"task_usd": 3}}).budget.max_usd == 30.0
    assert parse_config({"budget": {"max_task_usd": 50}}).budget.max_usd == 50.0
    with pytest.raises(ConfigError) as info:
        parse_config({"budget": {"task_usd": 5, "max_task_usd": 4}})
    assert info.value.key == "budget.max_task_usd"
    assert "at least task_usd (5)" in str(info.value)
