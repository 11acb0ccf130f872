"""Arguments checked against a tool's `inputSchema` before any server sees them.

Validators are compiled once, when a tool is listed. A server whose schema is itself broken
still gets its arguments checked as "an object", and the broken schema is logged: refusing
every call would punish the user for the server's bug, skipping the check would let
anything through.
"""

from __future__ import annotations

import logging
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

log = logging.getLogger(__name__)

_OBJECT = {"type": "object"}


def compile_validator(tool: str, schema: dict[str, Any]) -> Validator:
    """A validator for `schema`, or for "any object" if the schema is invalid."""
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        log.warning(
            "tool %s has an invalid input schema (%s); checking only for an object",
            tool,
            exc.message,
        )
        return Draft202012Validator(_OBJECT)
    return cls(schema)


def problems(validator: Validator, arguments: Any) -> list[str]:
    """Every way `arguments` breaks the schema, as `$.path: message`, in path order."""
    errors = sorted(
        validator.iter_errors(arguments), key=lambda e: (list(map(str, e.path)), e.message)
    )
    return [f"{error.json_path}: {error.message}" for error in errors]
