import pytest

from bot.base.redact import REDACTED, redact, redact_text, secrets_in

SLACK = "xoxb-1234567890-abcdefghij"


def test_secret_keys_are_redacted_whatever_their_value() -> None:
    data = {
        "token": "t-123",
        "Password": "hunter2",
        "X-Api-Key": "k",
        "apikey": "k2",
        "private_key": {"pem": "..."},
        "Cookie": "a=b",
        "authorization": 42,
        "headers": [{"Authorization": "anything"}],
        "slack_bot_token": "zz",
        "client_secret": "s",
        "query": "weather",
        "count": 3,
        "empty": None,
    }
    out = redact(data)
    for key in (
        "token",
        "Password",
        "X-Api-Key",
        "apikey",
        "private_key",
        "Cookie",
        "authorization",
        "slack_bot_token",
        "client_secret",
    ):
        assert out[key] == REDACTED, key
    assert out["headers"] == [{"Authorization": REDACTED}]
    assert out["query"] == "weather" and out["count"] == 3 and out["empty"] is None


@pytest.mark.parametrize(
    "secret",
    [
        SLACK,
        "xoxp-1-2-3-abc",
        "xapp-1-A123-456-abcdef",
        "sk-ant-api03-AbCdEf123456_xyz",
        "sk-proj-abcdefgh12345678",
        "Bearer eyJhbGciOi.abc.def",
        "ghp_abcdefghijklmnopqrstuvwx",
        "github_pat_11ABCDEFG0123456789_abcdefghijkl",
        "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    ],
)
def test_secret_shaped_values_are_redacted_under_innocent_keys(secret: str) -> None:
    out = redact({"note": f"please use {secret} now", "items": [secret]})
    assert secret not in str(out)
    assert out["note"].startswith("please use ") and REDACTED in out["note"]
    assert out["items"] == [REDACTED]


@pytest.mark.parametrize(
    "innocent",
    [
        "task-list",
        "desk-lamp-1234567890",
        "skip-this",
        "a3f9c2e1b4d5a6f7e8d9c0b1a2f3e4d5c6b7a8f9",
        "the bearer of news",
        "xoxo hugs",
        "risk-assessment-2024-q3",
    ],
)
def test_ordinary_text_is_left_alone(innocent: str) -> None:
    assert redact({"text": innocent}) == {"text": innocent}


def test_password_in_url_is_redacted() -> None:
    assert redact_text("clone https://ann:s3cr3t@git.example.com/r.git") == (
        f"clone https://ann:{REDACTED}@git.example.com/r.git"
    )


def test_known_secrets_are_scrubbed_from_free_text() -> None:
    args = {"username": "ann", "token": "hunter2-plain"}
    assert secrets_in(args) == {"hunter2-plain"}
    assert redact_text("welcome ann; token hunter2-plain accepted", secrets_in(args)) == (
        f"welcome ann; token {REDACTED} accepted"
    )
