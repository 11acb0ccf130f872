"""Secrets at rest: COWORKER_SECRET_KEY seals them; a second key lets the first be replaced."""

from __future__ import annotations

import pytest

from bot.base.errors import SecretUnreadable, SettingsError
from bot.base.secretbox import SecretBox
from bot.base.settings import load_settings

OLD = "old-key-0123456789-0123456789-0123456789"
NEW = "new-key-0123456789-0123456789-0123456789"


def test_sealed_text_opens_and_does_not_show_what_it_holds() -> None:
    box = SecretBox.from_setting(NEW, "oauth tokens")
    sealed = box.seal("docs-at-secret-access-token")
    assert "docs-at-secret" not in sealed
    assert box.open_text(sealed) == "docs-at-secret-access-token"


def test_a_changed_value_or_another_purpose_does_not_open() -> None:
    box = SecretBox.from_setting(NEW, "oauth tokens")
    sealed = box.seal("token")
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SecretUnreadable):
        box.open(tampered)
    with pytest.raises(SecretUnreadable):
        SecretBox.from_setting(NEW, "console sessions").open(sealed)
    with pytest.raises(SecretUnreadable):
        SecretBox.from_setting(OLD, "oauth tokens").open(sealed)


def test_rotation_the_new_key_first_opens_old_values_and_reseals_them() -> None:
    old = SecretBox.from_setting(OLD, "oauth tokens")
    sealed = old.seal("token")
    both = SecretBox.from_setting(f"{NEW}, {OLD}", "oauth tokens")
    assert both.keys == 2 and both.open_text(sealed) == "token"
    resealed = both.reseal(sealed)
    assert SecretBox.from_setting(NEW, "oauth tokens").open_text(resealed) == "token"
    with pytest.raises(SecretUnreadable):
        old.open(resealed)


@pytest.mark.parametrize("value", ["weakkey", f"{NEW},weakkey", " , "])
def test_a_weak_or_empty_key_is_a_settings_error_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="COWORKER_SECRET_KEY") as caught:
        SecretBox.from_setting(value, "oauth tokens")
    assert caught.value.variable == "COWORKER_SECRET_KEY"
    assert "weakkey" not in str(caught.value)  # the key itself is never repeated


def test_public_url_and_secret_key_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLIC_URL", "https://coworker.example.com/")
    monkeypatch.setenv("COWORKER_SECRET_KEY", NEW)
    settings = load_settings()
    assert settings.public_base(4000) == "https://coworker.example.com"
    assert NEW not in repr(settings)
    monkeypatch.delenv("PUBLIC_URL")
    assert load_settings(port=0).public_base(41234) == "http://127.0.0.1:41234"
    monkeypatch.setenv("PUBLIC_URL", "coworker.example.com")
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        load_settings()
