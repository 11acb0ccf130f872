"""Secret redaction for everything the gateway writes down (audit rows, logs, reasons).

Two rules, applied together:

- a value stored under a key that names a secret (`token`, `password`, `secret`,
  `authorization`, `api_key`, `private_key`, `cookie`, … matched case-insensitively as a
  substring, so `X-Api-Key` and `slack_bot_token` count) becomes "[redacted]", whatever
  its type;
- a string that *looks* like a credential (Slack `xox?-`/`xapp-` tokens, `sk-`/`sk-ant-` keys,
  `Bearer …`, GitHub tokens, AWS access keys, JWTs, PEM private keys, passwords in URLs) is
  replaced by "[redacted]" wherever it appears, under any key and inside longer text.

`known` lets a caller also scrub values it already knows are secret (the arguments it
redacted by key) from free text, such as a tool result that echoes them back.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"token|passw(?:or)?d|^pwd$|secret|authori[sz]ation|api[_-]?key|private[_-]?key|cookie|"
    r"credential|session[_-]?id",
    re.IGNORECASE,
)

_SECRET_VALUE = re.compile(
    "|".join(
        [
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r"\bxox[abposr]-[A-Za-z0-9-]+",
            r"\bxapp-[A-Za-z0-9-]+",
            r"(?<![A-Za-z0-9])sk-(?:ant-)?[A-Za-z0-9_-]{8,}",
            r"(?i:\bbearer)\s+[A-Za-z0-9._~+/=-]{8,}",
            r"\bgh[pousr]_[A-Za-z0-9]{16,}",
            r"\bgithub_pat_[A-Za-z0-9_]{16,}",
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            r"(?i:aws_?secret(?:_?access)?_?key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        ]
    )
)
# `scheme://user:password@host`: keep the user and host, drop the password.
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]+):[^/\s@]+@")

#: shorter known values are not scrubbed from text: they would hit ordinary words
_MIN_KNOWN = 4


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret."""
    return bool(_SECRET_KEY.search(key))


def redact_text(text: str, known: Collection[str] = ()) -> str:
    """`text` with credential-shaped substrings and `known` secrets replaced."""
    for value in sorted((k for k in known if len(k) >= _MIN_KNOWN), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _SECRET_VALUE.sub(REDACTED, text)
    return _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)


def redact(obj: Any, known: Collection[str] = ()) -> Any:
    """A copy of `obj` (JSON-like data) with secrets replaced by "[redacted]"."""
    if isinstance(obj, Mapping):
        return {
            key: REDACTED if _hides(key, value) else redact(value, known)
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact(item, known) for item in obj]
    if isinstance(obj, str):
        return redact_text(obj, known)
    return obj


def secrets_in(obj: Any) -> set[str]:
    """The string values `redact` would hide by key, to scrub them from free text too."""
    found: set[str] = set()
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if _hides(key, value):
                found |= _strings(value)
            else:
                found |= secrets_in(value)
    elif isinstance(obj, list | tuple):
        for item in obj:
            found |= secrets_in(item)
    return found


def _hides(key: object, value: object) -> bool:
    return isinstance(key, str) and value is not None and is_secret_key(key)


def _strings(obj: Any) -> set[str]:
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return {str(obj)}
    if isinstance(obj, Mapping):
        return {s for v in obj.values() for s in _strings(v)}
    if isinstance(obj, list | tuple):
        return {s for v in obj for s in _strings(v)}
    return set()
