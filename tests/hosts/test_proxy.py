"""docs/deployment.md's nginx configuration, for real, in front of two daphnes.

The block is read from the page and changed only where a test must: the listen
addresses (free loopback ports), the upstream servers (the two daphnes) and the
certificate (self-signed for 127.0.0.1, made here and trusted by the clients). Skipped
where nginx is not installed (Debian: apt-get install nginx-light).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from devtools import processes
from devtools.processes import free_port, wait_for_http
from queue_app.services import line
from tests.processes import LOG_DIR, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)),
        None,
    )


def documented_block() -> str:
    """The one ```nginx block of docs/deployment.md."""
    blocks = re.findall(r"```nginx\n(.*?)```", DEPLOYMENT_DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/deployment.md should hold exactly one nginx block"
    return blocks[0]


def replace_once(text: str, pattern: str, replacement: str, *, count: int = 1) -> str:
    """`pattern` replaced; the doc must have it exactly `count` times (a changed doc fails
    here, loudly, instead of testing something else)."""
    found = len(re.findall(pattern, text, flags=re.M))
    assert found == count, f"{pattern!r} is in the nginx block {found} times, not {count}"
    return re.sub(pattern, replacement, text, flags=re.M)


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Proxy:
    def __init__(self, https_port: int, http_port: int, cert: Path) -> None:
        self.https = f"https://127.0.0.1:{https_port}"
        self.http = f"http://127.0.0.1:{http_port}"
        self.tls = ssl.create_default_context(cafile=str(cert))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.https, verify=self.tls, timeout=10, trust_env=False)


class Web:
    """The daphnes behind the proxy, as production runs them; restartable in place."""

    NAMES = ("daphne-proxied-a", "daphne-proxied-b")

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.servers: list[tuple[processes.LoggedProcess, int]] = []

    def start(self, index: int, port: int | None = None) -> None:
        server = processes.start_daphne(
            self.env,
            self.NAMES[index],
            log_dir=LOG_DIR,
            cwd=ROOT,
            port=port,
            options=("--proxy-headers",),
        )
        if index < len(self.servers):
            self.servers[index] = server
        else:
            self.servers.append(server)

    @property
    def ports(self) -> list[int]:
        return [port for _, port in self.servers]

    def stop_all(self) -> None:
        for process, _ in self.servers:
            process.stop()


@pytest.fixture(scope="module")
def web(process_env) -> Iterator[Web]:
    web = Web(
        {
            **process_env,
            "TRUSTED_PROXY_SSL_HEADER": "X-Forwarded-Proto",
            "NUM_PROXIES": "1",
            "QUEUE_DISPATCH_ON_COMMIT": "0",
        }
    )
    try:
        for index in range(len(Web.NAMES)):
            web.start(index)
        yield web
    finally:
        web.stop_all()


@pytest.fixture(scope="module")
def proxy(web) -> Iterator[Proxy]:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    folder = Path(tempfile.mkdtemp(prefix="fathomloom-nginx-"))
    cert, key = self_signed(folder)
    https_port, http_port = free_port(), free_port()
    block = documented_block()
    for pattern, replacement, count in [
        (r"^[ \t]*listen 443 ssl;$", f"listen 127.0.0.1:{https_port} ssl;", 1),
        (r"^[ \t]*listen 80;$", f"listen 127.0.0.1:{http_port};", 1),
        (r"^[ \t]*server \d+\.\d+\.\d+\.\d+:8000 .*;$", "", 2),
        (
            r"^[ \t]*least_conn;$",
            "least_conn;\n"
            + "".join(
                f"server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;\n" for port in web.ports
            ),
            1,
        ),
        (r"^[ \t]*ssl_certificate \S+;$", f"ssl_certificate {cert};", 1),
        (r"^[ \t]*ssl_certificate_key \S+;$", f"ssl_certificate_key {key};", 1),
    ]:
        block = replace_once(block, pattern, replacement, count=count)
    temp = {name: folder / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    config = folder / "nginx.conf"
    config.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} info;\n"
        + "worker_processes 1;\nevents { worker_connections 256; }\nhttp {\n"
        + f"  access_log {folder / 'access.log'};\n"
        + "".join(f"  {name}_temp_path {path};\n" for name, path in temp.items())
        + block
        + "}\n"
    )
    command = [binary, "-e", str(folder / "error.log"), "-p", str(folder), "-c", str(config)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    server = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{http_port}/healthz", timeout=15)
        yield Proxy(https_port, http_port, cert)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def test_probes_and_the_api_answer_through_the_proxy(proxy, alice):
    with proxy.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        token = Token.objects.create(user=alice).key
        ticket = client.post("/api/ws-ticket", headers={"Authorization": f"Token {token}"})
        assert ticket.status_code == 201, ticket.text
        # Through the proxy daphne believes it is HTTPS (TRUSTED_PROXY_SSL_HEADER): HSTS.
        assert "max-age=" in ticket.headers["Strict-Transport-Security"]
    # Plain HTTP: the liveness probe answers, anything else is sent to HTTPS.
    plain = httpx.get(f"{proxy.http}/queue", timeout=10, trust_env=False)
    assert plain.status_code == 301
    assert plain.headers["Location"].startswith("https://127.0.0.1")
    assert httpx.get(f"{proxy.http}/healthz", timeout=10, trust_env=False).status_code == 200


def test_a_socket_through_the_proxy_gets_its_snapshot_then_events(
    proxy, alice, make_meeting, settings
):
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    token = Token.objects.create(user=alice).key
    meeting = make_meeting(alice)
    sockets = []
    try:
        # Several, so that least_conn puts some on each daphne.
        for _ in range(4):
            sockets.append(
                connect(
                    proxy.https.replace("https://", "wss://") + f"/queue_updates?token={token}",
                    ssl=proxy.tls,
                    origin=proxy.https,
                    open_timeout=10,
                    proxy=None,
                    legacy=True,  # closed below, not in a with block
                )
            )
        snapshots = [json.loads(socket.recv(timeout=10)) for socket in sockets]
        assert {s["type"] for s in snapshots} == {"QueueSnapshot"}
        seq = snapshots[0]["seq"]
        entry = line.entry_enqueue(meeting=meeting)
        for socket in sockets:
            update = json.loads(socket.recv(timeout=10))
            assert (update["type"], update["seq"]) == ("QueueUpdate", seq + 1)
            assert update["queue"][0]["id"] == str(entry.id)
    finally:
        for socket in sockets:
            socket.close()


def test_a_page_of_another_origin_cannot_open_a_socket_through_the_proxy(proxy, alice):
    token = Token.objects.create(user=alice).key
    with pytest.raises(InvalidStatus) as refused:
        connect(
            proxy.https.replace("https://", "wss://") + f"/queue_updates?token={token}",
            ssl=proxy.tls,
            origin="https://evil.example",
            open_timeout=10,
            proxy=None,
            legacy=True,
        )
    assert refused.value.response.status_code == 403


def test_a_rolling_restart_loses_no_socket_its_place(proxy, web, alice, make_meeting, settings):
    """One daphne stops and a new one takes its address, as in docs/deployment.md's rolling
    deploy: its sockets reconnect through the proxy with last_seq (to the other daphne)
    and get exactly the events they missed; every socket then sees the same live stream."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    token = Token.objects.create(user=alice).key
    meetings = [make_meeting(alice) for _ in range(4)]
    url = proxy.https.replace("https://", "wss://") + f"/queue_updates?token={token}"

    def open_socket(query: str = ""):
        return connect(
            url + query,
            ssl=proxy.tls,
            origin=proxy.https,
            open_timeout=10,
            proxy=None,
            legacy=True,
        )

    sockets = [open_socket() for _ in range(6)]
    seen: list[list[int]] = [[json.loads(s.recv(timeout=10))["seq"]] for s in sockets]
    try:
        old, port = web.servers[0]
        old.stop()
        line.entry_enqueue(meeting=meetings[0])
        line.entry_enqueue(meeting=meetings[1])
        dropped = []
        for index, socket in enumerate(sockets):
            try:
                while len(seen[index]) < 3:
                    seen[index].append(json.loads(socket.recv(timeout=10))["seq"])
            except ConnectionClosed:
                dropped.append(index)
        assert dropped, "least_conn put no socket on the stopped daphne"
        assert len(dropped) < len(sockets), "every socket was on the stopped daphne"
        for index in dropped:
            # As live.js does: reconnect with the seq of the last event applied.
            sockets[index] = open_socket(f"&last_seq={seen[index][-1]}")
        web.start(0, port=port)  # the new version, at the old address
        line.entry_enqueue(meeting=meetings[2])
        first = seen[0][0]
        for index, socket in enumerate(sockets):
            while seen[index][-1] < first + 3:
                message = json.loads(socket.recv(timeout=10))
                assert message["type"] == "QueueUpdate", message
                seen[index].append(message["seq"])
        assert all(s == [first, first + 1, first + 2, first + 3] for s in seen), seen
    finally:
        for socket in sockets:
            socket.close()
