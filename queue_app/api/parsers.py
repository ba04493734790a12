"""The API's JSON parser: DRF's, refusing with a 400 `parse_error` what DRF's would crash on
or misread (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]).

- Nesting deeper than MAX_DEPTH. `json.loads` descends once per level: 100,000 `[` raise
  RecursionError, a 500 on every endpoint, signed in or not. A scan of the brackets outside
  strings refuses such a body before it is parsed; no request of this API nests past 2.
- Anything but UTF-8, the only encoding of JSON between systems (RFC 8259, 8.1): other
  charsets, bytes that do not decode, a byte order mark.
- Lone surrogates (`"\\ud800"`): valid JSON escapes, but no text; they would fail later,
  wherever the string is encoded (hashing a username, the database).

A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE never gets here: reading it raises Django's
RequestDataTooBig, answered 413 by queue_app/api/errors.py.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant

# Levels of arrays and objects one body may nest.
MAX_DEPTH = 32

# A JSON string, escapes included (the unrolled form: linear, no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
# Where a lone surrogate might be; a pair ("\ud83d\ude00", one emoji) matches too.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def exceeds_depth(text: str, limit: int) -> bool:
    """Whether the arrays and objects of the JSON `text` nest more than `limit` deep.

    Brackets inside strings do not count. Linear in the length of `text`, and stops at
    the first level past `limit`; text that is not JSON may be misjudged, but json.loads
    refuses it anyway.
    """
    if text.count("[") + text.count("{") <= limit:  # the usual body: nothing to scan
        return False
    depth = 0
    for bracket in _NOT_A_BRACKET.sub("", _STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _holds_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser (so DRF still hands it `request.body`, size-checked by Django),
    bounded: see the module's docstring."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        # DRF's get_encoding refuses non-text codecs (bz2_codec...) with a ParseError.
        encoding = parsers.get_encoding(parser_context or {})
        if codecs.lookup(encoding).name != "utf-8":
            raise ParseError(f'JSON must be UTF-8, not "{encoding}".')
        try:
            text = stream.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - not UTF-8 at byte {exc.start}.") from None
        if exceeds_depth(text, MAX_DEPTH):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.")
        try:
            data = json.loads(text, parse_constant=strict_constant if self.strict else None)
        except RecursionError:  # cannot happen past the scan; a 400 all the same if it does
            raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.") from None
        except ValueError as exc:  # the message names a position, never the content
            raise ParseError(f"JSON parse error - {exc}") from None
        if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(data):
            raise ParseError(
                "JSON parse error - a string holds a lone surrogate (\\ud800-\\udfff)."
            )
        return data
