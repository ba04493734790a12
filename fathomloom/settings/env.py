"""Typed readers of environment variables, for the settings modules.

Pure parsing: each reads one variable from os.environ and returns its default when the
variable is unset or empty. A value that cannot be parsed raises ImproperlyConfigured
naming the variable, so a typo stops the process at start-up instead of later.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
N = TypeVar("N", int, float)


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str = "") -> str:
    """The variable as it is, or `default` when it is unset or empty."""
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    """True for 1, true, yes or on (any case); any other value is False."""
    value = _raw(name)
    if value is None:
        return default
    return value.lower() in TRUE_WORDS


def env_int(name: str, default: int) -> int:
    return _number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _number(name, default, float, "a number")


def _number(name: str, default: N, parse: Callable[[str], N], what: str) -> N:
    value = _raw(name)
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be {what}, got {value!r}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Comma-separated items, each stripped, empty ones dropped."""
    value = _raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]
