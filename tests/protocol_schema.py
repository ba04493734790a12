"""The wire format's schema as docs/protocol.md documents it, and a check against it.

Tests validate what the server emits against the documented copy (not the code's), so a
change to the format that the docs do not show fails; test_protocol_schema.py keeps the
documented copy equal to queue_app.events.protocol_schema().
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

PROTOCOL_DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_BLOCK = re.compile(r"<!-- schema:start -->\s*```json\n(.*?)```\s*<!-- schema:end -->", re.S)


def documented_schema() -> dict[str, Any]:
    match = _BLOCK.search(PROTOCOL_DOC.read_text())
    assert match, "docs/protocol.md has no schema block"
    return json.loads(match.group(1))


@functools.cache
def _validator() -> Draft202012Validator:
    schema = documented_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def assert_valid_message(message: dict[str, Any]) -> None:
    """Fail with the first schema error of a server message, if it has one."""
    errors = sorted(_validator().iter_errors(message), key=lambda e: list(e.absolute_path))
    assert not errors, f"{message.get('type')} breaks docs/protocol.md's schema: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:3]
    )
