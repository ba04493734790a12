"""The local stack behind `make run` and `make test`.

    python scripts/stack.py run           Redis (if none answers), the Fathom sandbox (unless
                                          FATHOM_API_BASE_URL is set), migrate, demo data,
                                          then daphne + Celery worker + beat until Ctrl-C
    python scripts/stack.py test [ARGS]   Redis (if none answers), then pytest ARGS
    python scripts/stack.py bench [ARGS]  Redis (if none answers), PostgreSQL at DATABASE_URL
                                          (default: the fathomloom_bench database), then
                                          python -m bench.run ARGS (bench/README.md)
    python scripts/stack.py keys          only the development keys (below), then exit

The development keys: unless SECRET_KEY / CREDENTIAL_ENCRYPTION_KEYS are set, `run` (with
DEBUG on) and `bench` pass every process the keys kept in VAR_DIR/dev-secret-key and
VAR_DIR/dev-credential-key, made here the first time. The settings only read those files
(with DEBUG on, for manage.py run by hand); `test` needs neither, since the test settings
(fathomloom/settings/test.py) bring fixed keys.

A private redis-server is started only when nothing answers at REDIS_URL; it is stopped
again on exit, so Ctrl-C leaves no process behind.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("VAR_DIR", ROOT / "var"))
BIN = Path(sys.executable).parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Tests keep to their own Redis database so that they never eat a running stack's tasks.
TEST_REDIS_DB = os.environ.get("TEST_REDIS_DB", "15")
# The benchmarks flush their Redis database between scenarios: one of their own.
BENCH_REDIS_DB = os.environ.get("BENCH_REDIS_DB", "14")
BENCH_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fathomloom_bench"
# The development keys' files, as fathomloom/settings/devkeys.py names them.
DEV_SECRET_KEY_FILE = "dev-secret-key"
DEV_CREDENTIAL_KEY_FILE = "dev-credential-key"


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def die(message: str) -> None:
    print(f"[stack] error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        return bool(client.ping())
    except Exception:
        return False


def dev_key(name: str, make) -> str:
    """The key kept in VAR/name, made by `make()` (mode 600) if there is none yet."""
    path = VAR / name
    VAR.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two stacks starting at once must not each write a different key, or what
        # one encrypts the other could never decrypt.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(make())
    for _ in range(100):  # another process may have created it and still be writing
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)
    die(f"{path} is empty; delete it to have a new key made.")
    return ""


def use_dev_keys(env: dict[str, str]) -> None:
    """SECRET_KEY and CREDENTIAL_ENCRYPTION_KEYS from VAR's development keys, unless set."""
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = dev_key(DEV_SECRET_KEY_FILE, lambda: secrets.token_urlsafe(50))
    if not env.get("CREDENTIAL_ENCRYPTION_KEYS", "").strip():
        # A Fernet key: 32 random bytes, url-safe base64 (what Fernet.generate_key makes).
        env["CREDENTIAL_ENCRYPTION_KEYS"] = dev_key(
            DEV_CREDENTIAL_KEY_FILE, lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()
        )


def is_on(value: str | None) -> bool:
    """As the settings read a boolean (fathomloom/settings/env.py)."""
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def with_db(url: str, db: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{db}"))


class PrivateRedis:
    """A redis-server of our own, in its own session so that Ctrl-C reaches it last."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, port: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            die(
                "no Redis answers at REDIS_URL and there is no redis-server to start.\n"
                "  Install it (Debian/Ubuntu: sudo apt-get install redis-server;"
                " macOS: brew install redis),\n  or point REDIS_URL at a running Redis."
            )
        data = VAR / "redis"
        data.mkdir(parents=True, exist_ok=True)
        log = open(data / "redis.log", "ab")  # noqa: SIM115 - kept open for the child
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if port_open("127.0.0.1", port):
                say(f"started a private Redis on 127.0.0.1:{port} (log: {data / 'redis.log'})")
                return
            if self.process.poll() is not None:
                die(f"redis-server exited at once; see {data / 'redis.log'}")
            time.sleep(0.1)
        die("redis-server did not start within 10 seconds")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            say("stopped the private Redis")


class Sandbox:
    """The local Fathom sandbox, when FATHOM_API_BASE_URL does not name a real Fathom.

    Started here rather than by honcho because the demo users' meetings are imported
    from it before the rest of the stack starts.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> str:
        port = int(env.get("FATHOM_SANDBOX_PORT", "8765"))
        if port_open("127.0.0.1", port):
            port = free_port()
        log_path = VAR / "fathom-sandbox.log"
        log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child
        self.process = subprocess.Popen(
            [str(BIN / "python"), "-m", "fathom_sandbox", "--port", str(port), "--verbose"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if port_open("127.0.0.1", port):
                say(f"started the Fathom sandbox on http://127.0.0.1:{port} (log: {log_path})")
                return f"http://127.0.0.1:{port}/external/v1"
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        die(f"the Fathom sandbox did not start; see {log_path}")
        return ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            say("stopped the Fathom sandbox")


def ensure_redis(env: dict[str, str], private: PrivateRedis) -> str:
    url = env.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_answers(url):
        return url
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in {"127.0.0.1", "localhost", "::1"} or port_open(host, port):
        port = free_port()
    say(f"no Redis answers at {parsed.hostname}:{parsed.port or 6379}; starting one")
    private.start(port)
    return urlunparse(parsed._replace(netloc=f"127.0.0.1:{port}"))


def ensure_database(env: dict[str, str]) -> None:
    url = env.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return
    parsed = urlparse(url)
    if not port_open(parsed.hostname or "127.0.0.1", parsed.port or 5432):
        die(
            f"DATABASE_URL names PostgreSQL at {parsed.hostname}:{parsed.port or 5432},"
            " which does not answer.\n  Start PostgreSQL (Debian: sudo apt-get install"
            " postgresql), or unset DATABASE_URL to use SQLite."
        )


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(BIN / "python"), str(ROOT / "manage.py"), *args], env=env, check=True)


def wait_until_ready(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def announce(port: int, env: dict[str, str], procs: subprocess.Popen[bytes]) -> None:
    if not wait_until_ready(f"http://127.0.0.1:{port}/readyz", 90):
        if procs.poll() is None:
            say("the stack is not ready after 90 s; see the logs above")
        return
    password_file = VAR / "demo-password"
    password = env.get("DEMO_PASSWORD") or (
        f"the one printed when they were created (kept in {password_file})"
        if password_file.exists()
        else "as set when they were created"
    )
    base = f"http://127.0.0.1:{port}"
    say("")
    say(f"fathomloom is up:  {base}/")
    say(f"  admin           {base}/admin/")
    say(f"  API docs        {base}/api/docs/")
    say(f"  live queue      ws://127.0.0.1:{port}/queue_updates")
    say(f"  readiness       {base}/readyz")
    say(f"  Fathom          {env['FATHOM_API_BASE_URL']}")
    say(f"  demo logins     admin (staff), alice, bob; password: {password}")
    say("Ctrl-C stops everything.")


def fresh_metrics_dir(env: dict[str, str], name: str = "prometheus") -> None:
    """PROMETHEUS_MULTIPROC_DIR for the processes started here, emptied first: each
    process writes its metrics there and GET /metrics adds them up (docs/operations.md).
    Files of an earlier run would count its processes again."""
    path = VAR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def run(env: dict[str, str], sandbox: Sandbox) -> int:
    port = int(env.get("PORT", "8000"))
    if port_open("127.0.0.1", port):
        # daphne's port is shared (realtime.serve, SO_REUSEPORT, for restarts in place):
        # it would start beside what listens there instead of failing, so ask first.
        die(
            f"something already listens on port {port} (an earlier `make run`?): stop it,"
            " or choose another port with PORT="
        )
    env.setdefault("DEBUG", "1")
    if is_on(env["DEBUG"]):
        # With DEBUG off, SECRET_KEY must come from the user (the settings refuse to start).
        use_dev_keys(env)
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    seed = [str(BIN / "python"), str(ROOT / "manage.py"), "seed_demo"]
    if not env.get("FATHOM_API_BASE_URL"):
        env["FATHOM_API_BASE_URL"] = sandbox.start(env)
        seed += ["--sandbox-keys"]
    manage(env, "migrate", "--noinput")
    if env.get("DEMO_PASSWORD"):
        seed += ["--password", env["DEMO_PASSWORD"]]
    else:
        seed += ["--password-file", str(VAR / "demo-password")]
    subprocess.run(seed, env=env, check=True)
    env["WEB_PORT"] = str(port)
    fresh_metrics_dir(env)
    env["BEAT_SCHEDULE"] = str(VAR / "celerybeat-schedule")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    procs = subprocess.Popen(
        [str(BIN / "honcho"), "-f", str(ROOT / "Procfile"), "start"], env=env, cwd=ROOT
    )
    threading.Thread(target=announce, args=(port, env, procs), daemon=True).start()
    try:
        return procs.wait()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reached honcho too; a SIGTERM sent to us alone did not. Honcho
        # stops each child's process group and kills what is left after 5 seconds.
        if procs.poll() is None:
            procs.send_signal(signal.SIGTERM)
        try:
            procs.wait(timeout=20)
        except subprocess.TimeoutExpired:
            procs.kill()
            return 1
        return 0


def test(env: dict[str, str], args: list[str]) -> int:
    # No keys here: fathomloom/settings/test.py has fixed ones for every test process.
    env["REDIS_URL"] = with_db(env["REDIS_URL"], TEST_REDIS_DB)
    env.setdefault("CHANNEL_LAYER_PREFIX", "fathomloom-test")
    return subprocess.run(
        [str(BIN / "python"), "-m", "pytest", *args], env=env, cwd=ROOT
    ).returncode


def bench(env: dict[str, str], args: list[str]) -> int:
    use_dev_keys(env)
    env["REDIS_URL"] = with_db(env["REDIS_URL"], BENCH_REDIS_DB)
    return subprocess.run(
        [str(BIN / "python"), "-m", "bench.run", *args], env=env, cwd=ROOT
    ).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "bench", "keys"}:
        print(__doc__)
        return 2
    env = dict(os.environ)
    VAR.mkdir(parents=True, exist_ok=True)
    if argv[0] == "keys":
        use_dev_keys({})
        say(f"development keys: {VAR / DEV_SECRET_KEY_FILE}, {VAR / DEV_CREDENTIAL_KEY_FILE}")
        return 0
    private = PrivateRedis()
    sandbox = Sandbox()
    # SIGTERM (from a supervisor or `kill`) stops the stack the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        env["REDIS_URL"] = ensure_redis(env, private)
        if argv[0] == "bench":
            env.setdefault("DATABASE_URL", BENCH_DATABASE_URL)
        ensure_database(env)
        if argv[0] == "run":
            return run(env, sandbox)
        if argv[0] == "bench":
            return bench(env, argv[1:])
        return test(env, argv[1:])
    except KeyboardInterrupt:
        return 0 if argv[0] == "run" else 130
    except subprocess.CalledProcessError as exc:
        say(f"{' '.join(map(str, exc.cmd[1:3]))} failed with exit code {exc.returncode}")
        return exc.returncode
    finally:
        sandbox.stop()
        private.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
