"""Strict validation of every name that reaches a path or a SQL statement.

Model names, versions, aliases, table names and partition keys are checked here before they touch the
file system or DuckDB, so a hostile value (``../``, quotes, semicolons) is refused with a clear error.
"""

from __future__ import annotations

import datetime as dt
import re

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class InvalidName(ValueError):
    """A name, version, alias, identifier or partition key that fails its strict pattern."""


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a safe registry name (letters, digits, ``_ . -``; no ``..``)."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise InvalidName(
            f"invalid {kind} {value!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
            "digit, and no '..'"
        )
    return value


def check_identifier(value: str) -> str:
    """Return ``value`` if it is a plain SQL identifier (DuckDB schema, table or column name)."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise InvalidName(
            f"invalid SQL identifier {value!r}: use letters, digits and '_', not starting with a digit"
        )
    return value


def check_table(value: str) -> tuple[str, str]:
    """Split and validate a ``schema.table`` name."""
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) != 2:
        raise InvalidName(f"invalid table name {value!r}: expected 'schema.table'")
    return check_identifier(parts[0]), check_identifier(parts[1])


def quote_table(value: str) -> str:
    """A validated ``schema.table`` name, double-quoted for SQL."""
    schema, table = check_table(value)
    return f'"{schema}"."{table}"'


def parse_partition_date(key: str) -> dt.date:
    """The date of a daily partition key (``YYYY-MM-DD``), refusing anything else."""
    if not isinstance(key, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", key):
        raise InvalidName(f"invalid daily partition key {key!r}: expected YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(key)
    except ValueError as exc:
        raise InvalidName(f"invalid daily partition key {key!r}: {exc}") from exc
