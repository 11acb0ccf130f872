"""Secrets at rest: values sealed with keys derived from `COWORKER_SECRET_KEY`.

The variable holds one key, or several separated by commas for rotation: the first seals,
every one opens. Each purpose (OAuth tokens, console sessions, …) gets its own Fernet key,
derived from each configured key with HKDF-SHA256, so a value sealed for one purpose never
opens as another's. Fernet (AES-CBC with an HMAC-SHA256, from `cryptography`) authenticates
what it seals: a changed or cut value does not open, it is not read as something else.

Rotation: put a new key first and keep the old one after it (`NEW,OLD`); at start the bot
seals the stored values again with the new key, after which the old one can go.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.base.errors import SecretUnreadable, SettingsError
from bot.base.settings import Settings

VARIABLE = "COWORKER_SECRET_KEY"
MIN_KEY_CHARS = 32
GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def _derive(key: str, purpose: str) -> Fernet:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(key.encode())))


class SecretBox:
    """Seals and opens one purpose's secrets with the configured keys."""

    def __init__(self, keys: list[str], purpose: str) -> None:
        self._fernet = MultiFernet([_derive(key, purpose) for key in keys])
        self.keys = len(keys)

    @classmethod
    def from_setting(cls, value: str, purpose: str) -> SecretBox:
        """The box for `purpose` from the variable's value; a weak key is a `SettingsError`."""
        keys = [key.strip() for key in value.split(",") if key.strip()]
        if not keys:
            raise SettingsError(
                f"{VARIABLE} is empty; generate one with {GENERATE}", variable=VARIABLE
            )
        for position, key in enumerate(keys, 1):
            if len(key) < MIN_KEY_CHARS:
                which = f"key {position} of {VARIABLE}" if len(keys) > 1 else VARIABLE
                raise SettingsError(
                    f"{which} is shorter than {MIN_KEY_CHARS} characters; "
                    f"generate one with {GENERATE}",
                    variable=VARIABLE,
                )
        return cls(keys, purpose)

    def seal(self, data: bytes | str) -> str:
        raw = data.encode() if isinstance(data, str) else data
        return self._fernet.encrypt(raw).decode("ascii")

    def open(self, sealed: str) -> bytes:
        """The sealed bytes; `SecretUnreadable` if no configured key opens them."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretUnreadable() from None

    def open_text(self, sealed: str) -> str:
        return self.open(sealed).decode()

    def reseal(self, sealed: str) -> str:
        """`sealed`, sealed again with the first key (rotation)."""
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise SecretUnreadable() from None


def token_box(settings: Settings) -> SecretBox | None:
    """The box sealing people's OAuth tokens (None when `COWORKER_SECRET_KEY` is unset)."""
    key = settings.coworker_secret_key
    return SecretBox.from_setting(key.get_secret_value(), "oauth tokens") if key else None
