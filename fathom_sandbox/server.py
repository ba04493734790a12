"""The sandbox server: Fathom's documented endpoints, its rate limits, and fault injection.

Fathom's API lives under ``/external/v1`` as on api.fathom.ai; signed video URLs under
``/signed/<token>``; the control API that tests drive under ``/_sandbox/``.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import hashlib
import json
import math
import re
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .deliveries import new_secret, post_signed
from .seed import MEDIA_DIR, build_meeting, seed_meetings

API_PREFIX = "/external/v1"
CONTROL_PREFIX = "/_sandbox"
FAULT_KINDS = {
    "status",  # answer with `status` (and optional JSON `body`) instead of the real answer
    "429",  # rate limited: Retry-After `retry_after` (null: no header) and RateLimit-Reset
    "slow",  # wait `seconds`, then answer normally
    "truncate",  # announce the full Content-Length, send `bytes` bytes, close the connection
    "reset",  # close the connection without answering
    "malformed_json",  # 200 with a body that is not JSON
    "wrong_types",  # 200 with the usual fields in the wrong types
    "generation_failed",  # the download reports `failed`, failure_reason generation_failed
    "generation_timeout",  # the download reports `failed`, failure_reason generation_timeout
    "expired",  # the download reports `expired`; on /signed/ a 403 as for an expired URL
    "drop_callback",  # on POST .../download: never POST to its destination_url
}
# Fathom's documented values (fathom-python 0.0.43's models).
DOMAINS_TYPES = ("all", "only_internal", "one_or_more_external")
TRIGGERED_FOR = (
    "my_recordings",
    "shared_external_recordings",
    "my_shared_with_team_recordings",
    "shared_team_recordings",
)
WEBHOOK_INCLUDES = (
    "include_transcript",
    "include_crm_matches",
    "include_summary",
    "include_action_items",
)
DAY = 24 * 3600.0


@dataclass
class Config:
    """Knobs tests can turn through ``POST /_sandbox/config``."""

    rate_limit: int = 60  # API calls per window per key, as Fathom documents
    rate_window: float = 60.0
    download_limit: int = 30  # download requests per window per key
    # Fathom's page size is its own (no parameter sets it); small so the seed data pages.
    page_size: int = 5
    processing_polls: int = 1  # polls that still say `processing` before `completed`
    # Fathom: downloads and their signed URLs expire "roughly 24 hours after generation".
    download_ttl: float = DAY
    signed_url_ttl: float = DAY
    # Seconds after a download request with destination_url until Fathom POSTs the result.
    callback_delay: float = 0.3


@dataclass
class Fault:
    id: int
    fault: str
    match: str | None = None
    method: str | None = None
    times: int | None = 1  # None: every matching request
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.match is None:
            return True
        if any(ch in self.match for ch in "*?["):
            return fnmatch.fnmatchcase(path, self.match)
        return path == self.match


@dataclass
class Download:
    download_id: str
    recording_id: int
    api_key: str
    created: float
    polls: int = 0
    outcome: str | None = None  # "failed" or "expired" once a fault decided it
    failure_reason: str | None = None
    ready: bool = False  # completed ahead of the poll count (a callback was sent)


def fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class SandboxState:
    """Everything the sandbox knows; one lock, because requests run on many threads."""

    def __init__(self, config: Config | None = None, *, seed: bool = True) -> None:
        self.lock = threading.Lock()
        self.default_config = copy.copy(config or Config())
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.config = copy.copy(self.default_config)
            self.meetings: dict[str, list[dict[str, Any]]] = seed_meetings() if self.seed else {}
            self.downloads: dict[str, Download] = {}
            self.signed: dict[str, tuple[int, float]] = {}
            self.webhooks: dict[str, dict[str, Any]] = {}
            self.deliveries: list[dict[str, Any]] = []
            self.faults: list[Fault] = []
            self.requests: list[dict[str, Any]] = []
            self.windows: dict[tuple[str, str], tuple[float, int]] = {}
            self._fault_ids = 0
            self._media_cache: dict[str, bytes] = {}

    # --- data -----------------------------------------------------------------------------

    def add_meeting(self, api_key: str, meeting: dict[str, Any]) -> dict[str, Any]:
        media = meeting.get("_media")
        if media and not (MEDIA_DIR / media).is_file():
            raise ValueError(f"no media file {media!r}")
        with self.lock:
            if self.find_recording(int(meeting["recording_id"])) is not None:
                raise ValueError(f"recording {meeting['recording_id']} exists")
            meetings = self.meetings.setdefault(api_key, [])
            meetings.append(meeting)
            meetings.sort(key=lambda m: str(m.get("created_at")), reverse=True)
        return meeting

    def find_recording(self, recording_id: int) -> tuple[str, dict[str, Any]] | None:
        for api_key, meetings in self.meetings.items():
            for meeting in meetings:
                if meeting.get("recording_id") == recording_id:
                    return api_key, meeting
        return None

    def webhooks_of(self, api_key: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(w) for w in self.webhooks.values() if w["api_key"] == api_key]

    def record_delivery(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.deliveries.append(entry)

    def media_bytes(self, name: str) -> bytes:
        if name not in self._media_cache:
            self._media_cache[name] = (MEDIA_DIR / name).read_bytes()
        return self._media_cache[name]

    # --- faults ---------------------------------------------------------------------------

    def add_fault(self, spec: dict[str, Any]) -> Fault:
        spec = dict(spec)
        kind = str(spec.pop("fault", ""))
        if kind == "status" and int(spec.get("status", 0)) == 429:
            kind = "429"
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(FAULT_KINDS)}")
        match = spec.pop("match", None)
        method = spec.pop("method", None)
        times = spec.pop("times", 1)
        with self.lock:
            self._fault_ids += 1
            fault = Fault(
                id=self._fault_ids,
                fault=kind,
                match=match,
                method=method,
                times=None if times is None else int(times),
                params=spec,
            )
            self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    # --- rate limits ----------------------------------------------------------------------

    def count_call(self, api_key: str, bucket: str, limit: int) -> tuple[bool, int, int]:
        """Counts one call in the key's fixed window: (allowed, remaining, seconds to reset)."""
        now = time.monotonic()
        window = self.config.rate_window
        with self.lock:
            start, used = self.windows.get((api_key, bucket), (now, 0))
            if now - start >= window:
                start, used = now, 0
            reset = max(1, math.ceil(start + window - now))
            if used >= limit:
                self.windows[(api_key, bucket)] = (start, used)
                return False, 0, reset
            used += 1
            self.windows[(api_key, bucket)] = (start, used)
            return True, limit - used, reset


def _public(meeting: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    out = {k: v for k, v in meeting.items() if not k.startswith("_")}
    for flag, key in (
        ("include_transcript", "transcript"),
        ("include_summary", "default_summary"),
        ("include_action_items", "action_items"),
        ("include_crm_matches", "crm_matches"),
        ("include_highlights", "highlights"),
    ):
        if not _flag(query, flag):
            out[key] = None
    return copy.deepcopy(out)


def _webhook_payload(meeting: dict[str, Any], webhook: dict[str, Any]) -> dict[str, Any]:
    """The meeting as a webhook delivers it: the includes the webhook asked for."""
    query = {flag: ["true"] for flag in WEBHOOK_INCLUDES if webhook.get(flag)}
    return _public(meeting, query)


def _page(items: list[Any], query: dict[str, list[str]], size: int) -> dict[str, Any]:
    """One page of a Fathom list: ``{limit, next_cursor, items}``, by opaque cursor."""
    offset = 0
    if query.get("cursor", [""])[-1]:
        try:
            offset = int(base64.urlsafe_b64decode(query["cursor"][-1].encode()).decode())
        except ValueError:
            raise ApiError(400, "invalid cursor") from None
    more = offset + size < len(items)
    return {
        "limit": size,
        "next_cursor": (
            base64.urlsafe_b64encode(str(offset + size).encode()).decode() if more else None
        ),
        "items": items[offset : offset + size],
    }


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in ("true", "1")


def _values(query: dict[str, list[str]], name: str) -> list[str]:
    # Fathom's documented form is `recorded_by[]=a&recorded_by[]=b`; the bare name works too.
    return query.get(f"{name}[]", []) + query.get(name, [])


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SandboxHandler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from a real API
    # Headers and body leave in one write: separate small writes met delayed ACKs and cost
    # 40 ms a request on a kept-alive connection.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server_version = "FathomSandbox/1.0"

    # --- plumbing -------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    @property
    def state(self) -> SandboxState:
        return self.server.state

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        query = parse_qs(url.query, keep_blank_values=True)
        self._extra_headers: dict[str, str] = {}
        self._body: bytes | None = None  # one handler serves every request of a connection
        try:
            if path.startswith(CONTROL_PREFIX + "/") or path == CONTROL_PREFIX:
                self._control(method, path[len(CONTROL_PREFIX) :], query)
                return
            self._body = self._read_body()
            relative = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else path
            api_key = self.headers.get("X-Api-Key")
            entry = {
                "time": time.time(),
                "method": method,
                "path": path,
                "query": url.query,
                "has_api_key": "x-api-key" in {h.lower() for h in self.headers},
                "key_fingerprint": fingerprint(api_key) if api_key else None,
                "status": None,
                "fault": None,
            }
            with self.state.lock:
                self.state.requests.append(entry)
            self._entry = entry
            fault = self.state.take_fault(method, relative)
            if fault is not None:
                entry["fault"] = fault.fault
                if fault.fault == "slow":
                    time.sleep(float(fault.params.get("seconds", 1)))
                    fault = None
            if path.startswith("/signed/"):
                self._signed(method, path[len("/signed/") :], fault)
            elif path.startswith(API_PREFIX + "/"):
                self._api(method, relative, query, fault)
            else:
                self._json(404, {"error": "not found"})
        except ApiError as exc:
            self._json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        # Read whole, always: an unread body would be parsed as the next request on a
        # kept-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_json(self) -> Any:
        raw = self._body
        if raw is None:
            raw = self._body = self._read_body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "body is not JSON") from None

    def _send(
        self, status: int, body: bytes, content_type: str, *, send_bytes: int | None = None
    ) -> None:
        if getattr(self, "_entry", None) is not None:
            self._entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in self._extra_headers.items():
            self.send_header(name, value)
        if send_bytes is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body if send_bytes is None else body[:send_bytes])
        self.wfile.flush()
        if send_bytes is not None:
            self.close_connection = True

    def _json(self, status: int, payload: Any, *, send_bytes: int | None = None) -> None:
        body = json.dumps(payload).encode()
        self._send(status, body, "application/json", send_bytes=send_bytes)

    def _drop_connection(self) -> None:
        if getattr(self, "_entry", None) is not None:
            self._entry["status"] = 0
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    # --- Fathom's API ---------------------------------------------------------------------

    def _api(
        self, method: str, path: str, query: dict[str, list[str]], fault: Fault | None
    ) -> None:
        api_key = self.headers.get("X-Api-Key")
        if not api_key or api_key not in self.state.meetings:
            raise ApiError(401, "invalid API key")
        config = self.state.config
        is_download_request = method == "POST" and re.fullmatch(r"/recordings/\d+/download", path)
        allowed, remaining, reset = self.state.count_call(api_key, "api", config.rate_limit)
        limit = config.rate_limit
        if allowed and is_download_request:
            allowed, remaining, reset = self.state.count_call(
                api_key, "download", config.download_limit
            )
            limit = config.download_limit
        self._extra_headers.update(
            {
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(reset),
            }
        )
        if not allowed:
            self._extra_headers["Retry-After"] = str(reset)
            raise ApiError(429, "rate limit exceeded")

        if fault is not None and self._apply_early_fault(fault):
            return

        status = 200
        if method == "GET" and path == "/meetings":
            payload = self._list_meetings(api_key, query)
        elif method == "GET" and path == "/teams":
            payload = self._list_teams(api_key, query)
        elif method == "GET" and path == "/team_members":
            payload = self._list_team_members(api_key, query)
        elif method == "GET" and path == "/meeting_types":
            payload = self._list_meeting_types(api_key, query)
        elif method == "POST" and path == "/webhooks":
            payload = self._create_webhook(api_key, self._read_json())
            status = 201
        elif method == "DELETE" and (m := re.fullmatch(r"/webhooks/([\w-]+)", path)):
            self._delete_webhook(api_key, m.group(1))
            self._send(204, b"", "application/json")
            return
        elif method == "GET" and (
            m := re.fullmatch(r"/recordings/(\d+)/(summary|transcript)", path)
        ):
            payload = self._recording_part(api_key, int(m.group(1)), m.group(2), query)
        elif (m := re.fullmatch(r"/recordings/(\d+)/download", path)) and method == "POST":
            payload = self._request_download(api_key, int(m.group(1)), self._read_json(), fault)
            status = 202
        elif (m := re.fullmatch(r"/recordings/(\d+)/downloads/([\w-]+)", path)) and method in (
            "GET",
            "HEAD",
        ):
            payload = self._get_download(api_key, int(m.group(1)), m.group(2), fault)
        else:
            raise ApiError(404, "not found")

        if fault is not None and fault.fault == "malformed_json":
            body = json.dumps(payload).encode()
            self._send(200, body[: max(1, len(body) // 2)], "application/json")
        elif fault is not None and fault.fault == "wrong_types":
            self._json(200, _wrong_types(payload))
        elif fault is not None and fault.fault == "truncate":
            self._json(status, payload, send_bytes=int(fault.params.get("bytes", 10)))
        else:
            self._json(status, payload)

    def _apply_early_fault(self, fault: Fault) -> bool:
        """Faults that replace the answer entirely; True when the answer has been sent."""
        if fault.fault == "status":
            status = int(fault.params.get("status", 500))
            body = fault.params.get("body") or {"error": HTTPStatus(status).phrase}
            if fault.params.get("retry_after") is not None:
                self._extra_headers["Retry-After"] = str(fault.params["retry_after"])
            self._json(status, body)
            return True
        if fault.fault == "429":
            retry_after = fault.params.get("retry_after", 1)
            if retry_after is not None:
                self._extra_headers["Retry-After"] = str(retry_after)
            if "reset" in fault.params:
                self._extra_headers["RateLimit-Reset"] = str(fault.params["reset"])
            self._extra_headers["RateLimit-Remaining"] = "0"
            self._json(429, {"error": "rate limit exceeded"})
            return True
        if fault.fault == "reset":
            self._drop_connection()
            return True
        return False

    def _list_meetings(self, api_key: str, query: dict[str, list[str]]) -> dict[str, Any]:
        # No page-size parameter: Fathom documents none (a `limit` sent is ignored).
        try:
            created_after = [_parse_time(v) for v in query.get("created_after", [])[-1:]]
            created_before = [_parse_time(v) for v in query.get("created_before", [])[-1:]]
        except ValueError:
            raise ApiError(400, "invalid query parameter") from None
        domains_type = query.get("calendar_invitees_domains_type", ["all"])[-1]
        if domains_type not in DOMAINS_TYPES:
            raise ApiError(400, f"calendar_invitees_domains_type must be one of {DOMAINS_TYPES}")
        recorded_by = set(_values(query, "recorded_by"))
        teams = set(_values(query, "teams"))
        domains = set(_values(query, "calendar_invitees_domains"))
        meeting_type = query.get("meeting_type", [None])[-1]
        with self.state.lock:
            meetings = list(self.state.meetings.get(api_key, []))
        selected = []
        for meeting in meetings:
            created = _parse_time(meeting["created_at"])
            if created_after and created <= created_after[0]:
                continue
            if created_before and created >= created_before[0]:
                continue
            recorder = meeting.get("recorded_by") or {}
            if recorded_by and recorder.get("email") not in recorded_by:
                continue
            if teams and recorder.get("team") not in teams:
                continue
            invitees = meeting.get("calendar_invitees") or []
            if domains and not domains & {i.get("email_domain") for i in invitees}:
                continue
            if domains_type != "all" and meeting["calendar_invitees_domains_type"] != domains_type:
                continue
            if meeting_type is not None and meeting.get("meeting_type") != meeting_type:
                continue
            selected.append(meeting)
        page = _page(selected, query, self.state.config.page_size)
        page["items"] = [_public(m, query) for m in page["items"]]
        return page

    def _visible_teams(self, api_key: str) -> set[str]:
        with self.state.lock:
            meetings = list(self.state.meetings.get(api_key, []))
        return {t for m in meetings if (t := (m.get("recorded_by") or {}).get("team"))}

    def _list_teams(self, api_key: str, query: dict[str, list[str]]) -> dict[str, Any]:
        items = [
            {"name": name, "created_at": "2025-01-06T09:00:00Z"}
            for name in sorted(self._visible_teams(api_key))
        ]
        return _page(items, query, self.state.config.page_size)

    def _list_team_members(self, api_key: str, query: dict[str, list[str]]) -> dict[str, Any]:
        teams = self._visible_teams(api_key)
        wanted = query.get("team", [None])[-1]
        if wanted is not None:
            teams &= {wanted}
        members: dict[str, dict[str, Any]] = {}
        with self.state.lock:
            every = [m for ms in self.state.meetings.values() for m in ms]
        for meeting in every:
            recorder = meeting.get("recorded_by") or {}
            if recorder.get("team") in teams and recorder.get("email") not in members:
                members[recorder["email"]] = {
                    "name": recorder.get("name") or recorder["email"],
                    "email": recorder["email"],
                    "created_at": "2025-01-06T09:00:00Z",
                }
        items = sorted(members.values(), key=lambda m: m["email"])
        return _page(items, query, self.state.config.page_size)

    def _list_meeting_types(self, api_key: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self.state.lock:
            names = {m["meeting_type"] for m in self.state.meetings.get(api_key, [])}
        items = [
            {"name": name, "status": "active", "created_at": "2025-01-06T09:00:00Z"}
            for name in sorted(n for n in names if n)
        ]
        return _page(items, query, self.state.config.page_size)

    def _create_webhook(self, api_key: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "body must be an object")
        url = body.get("destination_url")
        if not isinstance(url, str) or not re.match(r"https?://[^\s/]+", url):
            raise ApiError(400, "destination_url must be an http(s) URL")
        triggered_for = body.get("triggered_for")
        if (
            not isinstance(triggered_for, list)
            or not triggered_for
            or any(t not in TRIGGERED_FOR for t in triggered_for)
        ):
            raise ApiError(400, f"triggered_for must list some of {TRIGGERED_FOR}")
        includes = {flag: body.get(flag, False) for flag in WEBHOOK_INCLUDES}
        if any(not isinstance(v, bool) for v in includes.values()):
            raise ApiError(400, "include_* must be booleans")
        if not any(includes.values()):
            raise ApiError(400, f"at least one of {WEBHOOK_INCLUDES} must be true")
        webhook = {
            "id": "wh_" + secrets.token_hex(8),
            "url": url,
            "secret": new_secret(),
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **includes,
            "triggered_for": list(triggered_for),
        }
        with self.state.lock:
            self.state.webhooks[webhook["id"]] = {**webhook, "api_key": api_key}
        return webhook

    def _delete_webhook(self, api_key: str, webhook_id: str) -> None:
        with self.state.lock:
            webhook = self.state.webhooks.get(webhook_id)
            if webhook is None or webhook["api_key"] != api_key:
                raise ApiError(404, f"webhook {webhook_id} not found")
            del self.state.webhooks[webhook_id]

    def _recording_part(
        self, api_key: str, recording_id: int, part: str, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        meeting = self._owned_recording(api_key, recording_id)
        payload = (
            {"summary": copy.deepcopy(meeting.get("default_summary"))}
            if part == "summary"
            else {"transcript": copy.deepcopy(meeting.get("transcript") or [])}
        )
        destination = query.get("destination_url", [None])[-1]
        if destination is None:
            return payload
        # Asynchronous: the answer names the URL, and Fathom POSTs the data there.
        self._post_to(api_key, destination, payload, kind=part)
        return {"destination_url": destination}

    def _post_to(
        self,
        api_key: str,
        url: str,
        payload: Any,
        *,
        kind: str,
        delay: float = 0.0,
        before_send: Any = None,
    ) -> None:
        # Signed like Fathom's webhooks; with the secrets of the key's webhooks, as Fathom
        # does not say which secret signs a destination_url POST (see the README).
        secrets_ = [w["secret"] for w in self.state.webhooks_of(api_key)]
        post_signed(
            url,
            payload,
            secrets_=secrets_,
            kind=kind,
            record=self.state.record_delivery,
            delay=delay,
            before_send=before_send,
        )

    def _owned_recording(self, api_key: str, recording_id: int) -> dict[str, Any]:
        with self.state.lock:
            found = self.state.find_recording(recording_id)
        # Another user's recording is indistinguishable from a missing one, as on Fathom.
        if found is None or found[0] != api_key:
            raise ApiError(404, f"recording {recording_id} not found")
        return found[1]

    def _request_download(
        self, api_key: str, recording_id: int, body: Any, fault: Fault | None
    ) -> dict[str, Any]:
        meeting = self._owned_recording(api_key, recording_id)
        if meeting.get("_access") == "limited":
            raise ApiError(403, "limited-access share: downloading is not allowed")
        if not meeting.get("_media"):
            raise ApiError(422, "this recording has no media to download")
        destination = body.get("destination_url") if isinstance(body, dict) else None
        if destination is not None and (
            not isinstance(destination, str) or not re.match(r"https?://[^\s/]+", destination)
        ):
            raise ApiError(400, "destination_url must be an http(s) URL")
        download = Download(
            download_id=f"dl_{secrets.token_hex(8)}",
            recording_id=recording_id,
            api_key=api_key,
            created=time.monotonic(),
        )
        if fault is not None and fault.fault in ("generation_failed", "generation_timeout"):
            download.outcome, download.failure_reason = "failed", fault.fault
        # Audio-only recordings complete at once (Fathom's reference), as does every
        # download with processing_polls 0.
        download.ready = bool(meeting.get("_audio_only")) or self.state.config.processing_polls <= 0
        with self.state.lock:
            self.state.downloads[download.download_id] = download
        if destination and not (fault is not None and fault.fault == "drop_callback"):
            host = self._host()  # this handler serves other requests by the time it posts

            def completed() -> dict[str, Any] | None:
                # Only a completed download is POSTed ("when the download completes").
                with self.state.lock:
                    if download.outcome is not None:
                        return None
                    download.ready = True
                return self._download_payload(download, meeting, host)

            self._post_to(
                api_key,
                destination,
                None,
                kind="download",
                delay=0.0 if download.ready else self.state.config.callback_delay,
                before_send=completed,
            )
        return self._download_payload(download, meeting)

    def _get_download(
        self, api_key: str, recording_id: int, download_id: str, fault: Fault | None
    ) -> dict[str, Any]:
        meeting = self._owned_recording(api_key, recording_id)
        with self.state.lock:
            download = self.state.downloads.get(download_id)
            if download is None or download.recording_id != recording_id:
                raise ApiError(404, f"download {download_id} not found")
            if fault is not None and fault.fault in ("generation_failed", "generation_timeout"):
                download.outcome, download.failure_reason = "failed", fault.fault
            elif fault is not None and fault.fault == "expired":
                download.outcome = "expired"
            download.polls += 1
        return self._download_payload(download, meeting)

    def _host(self) -> str:
        return self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"

    def _download_payload(
        self, download: Download, meeting: dict[str, Any], host: str | None = None
    ) -> dict[str, Any]:
        """A RecordingDownload as Fathom answers it: status, and the file once completed
        (``video``, or ``audio`` alone for an audio-only recording)."""
        host = host or self._host()
        config = self.state.config
        payload: dict[str, Any] = {
            "download_id": download.download_id,
            "recording_id": download.recording_id,
        }
        if download.outcome == "failed":
            payload["status"] = "failed"
            payload["failure_reason"] = download.failure_reason or "generation_failed"
        elif (
            download.outcome == "expired"
            or time.monotonic() - download.created > config.download_ttl
        ):
            payload["status"] = "expired"
        elif not download.ready and download.polls <= config.processing_polls:
            payload["status"] = "processing"
        else:
            data = self.state.media_bytes(meeting["_media"])
            token = secrets.token_urlsafe(24)
            expires = time.time() + config.signed_url_ttl
            with self.state.lock:
                self.state.signed[token] = (download.recording_id, expires)
            audio = bool(meeting.get("_audio_only"))
            payload["status"] = "completed"
            payload["audio" if audio else "video"] = {
                "url": f"http://{host}/signed/{token}?expires={int(expires)}",
                "content_type": "audio/mp4" if audio else "video/mp4",
                "file_size_bytes": len(data),
                "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        return payload

    # --- signed video URLs ----------------------------------------------------------------

    def _signed(self, method: str, token: str, fault: Fault | None) -> None:
        if method not in ("GET", "HEAD"):
            raise ApiError(405, "method not allowed")
        if fault is not None:
            if fault.fault == "status":
                status = int(fault.params.get("status", 500))
                self._send(status, HTTPStatus(status).phrase.encode(), "text/plain")
                return
            if fault.fault == "expired":
                self._send(403, b"Request has expired", "text/plain")
                return
            if fault.fault == "reset":
                self._drop_connection()
                return
        with self.state.lock:
            signed = self.state.signed.get(token)
        if signed is None:
            self._send(403, b"Signature does not match", "text/plain")
            return
        recording_id, expires = signed
        if time.time() > expires:
            self._send(403, b"Request has expired", "text/plain")
            return
        with self.state.lock:
            found = self.state.find_recording(recording_id)
        if found is None:
            self._send(404, b"Not found", "text/plain")
            return
        data = self.state.media_bytes(found[1]["_media"])
        status, body = 200, data
        self._extra_headers["Accept-Ranges"] = "bytes"
        range_header = self.headers.get("Range")
        if range_header:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            first: int | None = None
            last = len(data) - 1
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    first = int(m.group(1))
                    if m.group(2):
                        last = min(int(m.group(2)), len(data) - 1)
                else:
                    first = max(0, len(data) - int(m.group(2)))
            if first is None or first > last or first >= len(data):
                self._extra_headers["Content-Range"] = f"bytes */{len(data)}"
                self._send(416, b"", "video/mp4")
                return
            status, body = 206, data[first : last + 1]
            self._extra_headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        send_bytes = None
        if fault is not None and fault.fault == "truncate":
            send_bytes = int(fault.params.get("bytes", 1000))
        self._send(status, body, "video/mp4", send_bytes=send_bytes)

    # --- the control API ------------------------------------------------------------------

    def _control(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        state = self.state
        if path == "/health" and method == "GET":
            self._json(200, {"ok": True})
        elif path == "/faults" and method == "POST":
            try:
                fault = state.add_fault(self._read_json())
            except (ValueError, TypeError) as exc:
                raise ApiError(400, str(exc)) from None
            self._json(201, asdict(fault))
        elif path == "/faults" and method == "GET":
            with state.lock:
                self._json(200, [asdict(f) for f in state.faults])
        elif path == "/faults" and method == "DELETE":
            with state.lock:
                state.faults.clear()
            self._json(200, {"ok": True})
        elif path == "/requests" and method == "GET":
            with state.lock:
                self._json(200, list(state.requests))
        elif path == "/requests" and method == "DELETE":
            with state.lock:
                state.requests.clear()
            self._json(200, {"ok": True})
        elif path == "/config" and method == "GET":
            self._json(200, asdict(state.config))
        elif path == "/config" and method == "POST":
            changes = self._read_json()
            with state.lock:
                for name, value in changes.items():
                    if not hasattr(state.config, name):
                        raise ApiError(400, f"unknown setting {name}")
                    setattr(state.config, name, type(getattr(state.config, name))(value))
                state.windows.clear()
            self._json(200, asdict(state.config))
        elif path == "/webhooks" and method == "GET":
            with state.lock:
                hooks = [
                    {
                        **{k: v for k, v in w.items() if k not in ("secret", "api_key")},
                        "key_fingerprint": fingerprint(w["api_key"]),
                    }
                    for w in state.webhooks.values()
                ]
            self._json(200, hooks)
        elif path == "/deliveries" and method == "GET":
            with state.lock:
                self._json(200, list(state.deliveries))
        elif path == "/reset" and method == "POST":
            state.reset()
            self._json(200, {"ok": True})
        elif path == "/meetings" and method == "POST":
            self._control_add_meeting(self._read_json())
        elif (m := re.fullmatch(r"/recordings/(\d+)(/sha256|/media)?", path)) and method == "GET":
            with state.lock:
                found = state.find_recording(int(m.group(1)))
            if found is None or not found[1].get("_media"):
                raise ApiError(404, "no such recording, or it has no media")
            data = state.media_bytes(found[1]["_media"])
            if m.group(2) == "/media":
                self._send(200, data, "video/mp4")
            else:
                self._json(
                    200,
                    {
                        "recording_id": int(m.group(1)),
                        "media": found[1]["_media"],
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    },
                )
        else:
            raise ApiError(404, "no such control endpoint")

    def _control_add_meeting(self, body: dict[str, Any]) -> None:
        """Adds a meeting (and the key, if new): ``{"api_key", "recording_id", ...fields}``."""
        if not isinstance(body, dict) or "api_key" not in body:
            raise ApiError(400, "api_key is required")
        api_key = str(body.pop("api_key"))
        if body.pop("key_only", False):
            with self.state.lock:
                self.state.meetings.setdefault(api_key, [])
            self._json(201, {"ok": True})
            return
        try:
            recording_id = int(body.pop("recording_id"))
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "recording_id is required") from None
        media = body.pop("media", None)
        notify = bool(body.pop("notify", True))
        flags = {
            "_audio_only": bool(body.pop("audio_only", False)),
            "_access": "limited" if body.pop("limited_access", False) else "standard",
        }
        no_media = bool(body.pop("no_media", False))
        builder_args = {
            k: body.pop(k)
            for k in ("recorder_name", "recorder_email", "team", "title")
            if k in body
        }
        if "created_at" in body:
            builder_args["created_at"] = _parse_time(str(body.pop("created_at")))
        meeting = build_meeting(recording_id, media=media, **builder_args, **body)
        meeting.update(flags)
        if no_media:
            meeting["_media"] = None
        try:
            self.state.add_meeting(api_key, meeting)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if notify:
            # Fathom's "new meeting content ready": one signed delivery per webhook.
            for webhook in self.state.webhooks_of(api_key):
                post_signed(
                    webhook["url"],
                    _webhook_payload(meeting, webhook),
                    secrets_=[webhook["secret"]],
                    kind="webhook",
                    record=self.state.record_delivery,
                )
        self._json(201, {k: v for k, v in meeting.items() if not k.startswith("_")})


def _wrong_types(payload: dict[str, Any]) -> dict[str, Any]:
    """The same answer with the fields a client relies on in the wrong JSON types."""
    out = copy.deepcopy(payload)
    if "items" in out:
        out["limit"] = str(out["limit"])
        for item in out["items"]:
            item["recording_id"] = str(item["recording_id"])
    if "download_id" in out:
        out["download_id"] = 12345
    for kind in ("video", "audio"):
        if kind in out:
            out[kind]["file_size_bytes"] = str(out[kind]["file_size_bytes"])
            out[kind]["url"] = 42
    if "status" in out and "items" not in out:
        out["status"] = ["completed"]
    return out


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], state: SandboxState, *, verbose: bool = False
    ) -> None:
        self.state = state
        self.verbose = verbose
        super().__init__(address, SandboxHandler)


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: Config | None = None,
    seed: bool = True,
    verbose: bool = False,
) -> SandboxServer:
    """A sandbox bound to ``host:port`` (0: a free port), not yet serving."""
    return SandboxServer((host, port), SandboxState(config, seed=seed), verbose=verbose)


__all__ = ["API_PREFIX", "Config", "SandboxServer", "SandboxState", "make_server"]
