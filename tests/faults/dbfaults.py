"""A database restart or outage inside this process, as the worker's code sees one.

When PostgreSQL restarts, every open connection dies: each query on one raises
OperationalError until the connection is closed and a new one made; while it is down,
new connections fail too. `DatabaseFaults` does the same to Django's connections (every
thread's) of whatever backend the tests use, so the worker's error handling can be tested
in-process. tests/faults/test_fault_suite.py restarts a real PostgreSQL.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import OperationalError, connections

MESSAGE = "server closed the connection unexpectedly"


class DatabaseFaults:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._lock = threading.Lock()
        self._open: set[int] = set()  # wrappers with a live connection
        self._dead: set[int] = set()  # wrappers whose connection the "server" dropped
        self._down = False
        self.failures = 0
        wrapper_class = type(connections["default"])
        original_cursor = wrapper_class._cursor
        original_close = wrapper_class.close
        original_is_usable = wrapper_class.is_usable
        faults = self

        def _cursor(wrapper: Any, *args: Any, **kwargs: Any) -> Any:
            with faults._lock:
                refused = faults._down or id(wrapper) in faults._dead
                if refused:
                    faults.failures += 1
            if refused:
                raise OperationalError(MESSAGE)
            cursor = original_cursor(wrapper, *args, **kwargs)
            with faults._lock:
                faults._open.add(id(wrapper))
            return cursor

        def close(wrapper: Any) -> None:
            with faults._lock:
                faults._dead.discard(id(wrapper))
                faults._open.discard(id(wrapper))
            original_close(wrapper)

        def is_usable(wrapper: Any) -> bool:
            with faults._lock:
                if faults._down or id(wrapper) in faults._dead:
                    return False
            return original_is_usable(wrapper)

        monkeypatch.setattr(wrapper_class, "_cursor", _cursor)
        monkeypatch.setattr(wrapper_class, "close", close)
        monkeypatch.setattr(wrapper_class, "is_usable", is_usable)

    def restart(self) -> None:
        """Every connection open now is dead; new ones work."""
        with self._lock:
            self._dead |= self._open

    def down(self) -> None:
        """Every connection open now is dead, and new ones fail, until up()."""
        with self._lock:
            self._dead |= self._open
            self._down = True

    def up(self) -> None:
        with self._lock:
            self._down = False

    def up_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.up)
        timer.daemon = True
        timer.start()
        return timer

    def heal(self) -> None:
        """The database is up and no connection is dead (for the test's own checks)."""
        with self._lock:
            self._down = False
            self._dead.clear()
