"""daphne on a listening socket opened with SO_REUSEPORT, so that a restart has no moment
when nobody listens: the new daphne starts beside the old one on the same port, and the
old one is stopped only once the new one is ready (docs/deployment.md, "Restarting
daphne").

    python -m realtime.serve --host H --port P [--backlog N] [--replace PIDFILE]
        [daphne's other options] fathomloom.asgi:application

Every daphne of a port must be started this way: the kernel lets a second socket bind a
port only when every socket bound to it asked for SO_REUSEPORT, and then spreads new
connections among them. The socket is handed to daphne as a file descriptor (Twisted
adopts it, then closes ours). Once daphne's reactor runs, with the application imported
and the port adopted, this prints READY. With `--replace PIDFILE`, it then writes its
pid there and sends SIGTERM to the daphne whose pid the file held: one command restarts
the port's daphne. The old daphne closes its listening socket and every socket with 1012
(realtime.daphne_io.on_daphne_shutdown); its clients reconnect at once, to the new one.

Why not start the new daphne after the old one stopped: the port is then closed for the
new one's start-up, 1.9-2.5 s of imports on the benchmark machine, which every client
waited out (bench/notes.md, issue 14).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

# What a daphne started here prints once it serves; the tests, the benchmarks and
# scripts wait for it (the port answers before that: the old daphne holds it too).
READY = "fathomloom: daphne ready"
DEFAULT_BACKLOG = 1024


def listening_socket(host: str, port: int, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """A non-blocking socket listening on host:port (IPv4: daphne's `--fd` adopts no
    other), which other processes' sockets with SO_REUSEPORT may share. The backlog (the
    kernel caps it at net.core.somaxconn): why 1,024, in devtools.processes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)  # Twisted adopts only non-blocking sockets
    except OSError:
        sock.close()
        raise
    return sock


def replace_previous(pidfile: Path, pid: int) -> int | None:
    """Write `pid` into `pidfile` and send SIGTERM to the process it named before, if it
    still runs and is not this one. Returns the pid stopped, or None."""
    previous = None
    with contextlib.suppress(FileNotFoundError, ValueError):
        previous = int(pidfile.read_text().strip())
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{pid}\n")
    if previous is None or previous == pid:
        return None
    try:
        os.kill(previous, signal.SIGTERM)
    except ProcessLookupError:  # it had stopped already
        return None
    return previous


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m realtime.serve", add_help=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=DEFAULT_BACKLOG)
    parser.add_argument(
        "--replace",
        type=Path,
        metavar="PIDFILE",
        help="once ready, write this pid there and stop the daphne it named",
    )
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    options, daphne_args = parse(sys.argv[1:] if argv is None else argv)
    sock = listening_socket(options.host, options.port, options.backlog)
    fileno = sock.detach()  # Twisted's adoption closes it (AdoptedStreamServerEndpoint)

    import daphne.server  # noqa: F401 - installs Twisted's asyncio reactor first
    from daphne.cli import CommandLineInterface
    from twisted.internet import reactor

    def announce() -> None:
        print(f"{READY} on {options.host}:{options.port} (pid {os.getpid()})", flush=True)
        if options.replace is not None:
            stopped = replace_previous(options.replace, os.getpid())
            if stopped is not None:
                print(f"fathomloom: asked daphne {stopped} to stop", flush=True)

    reactor.callWhenRunning(announce)
    CommandLineInterface().run(["--fd", str(fileno), *daphne_args])


if __name__ == "__main__":
    main()
