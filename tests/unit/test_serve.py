"""realtime.serve: the shared listening socket and the pid file's hand-over (the whole
restart runs in tests/integration/test_live_updates.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from realtime.serve import listening_socket, parse, replace_previous


def test_two_listening_sockets_share_a_port_and_both_accept():
    first = listening_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port)  # refused without SO_REUSEPORT on both
    try:
        assert second.getsockname()[1] == port
        first.close()  # the old daphne stops: the new one still listens
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        first.close()
        second.close()


def test_a_port_held_without_reuseport_is_not_shared():
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    try:
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", plain.getsockname()[1])
    finally:
        plain.close()


def test_replace_stops_the_process_the_pidfile_named_and_takes_its_place(tmp_path):
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pidfile = tmp_path / "run" / "daphne.pid"
    pidfile.parent.mkdir()
    pidfile.write_text(f"{old.pid}\n")
    try:
        assert replace_previous(pidfile, 4242) == old.pid
        assert old.wait(timeout=10) == -15  # SIGTERM
        assert pidfile.read_text() == "4242\n"
    finally:
        old.kill()


def test_replace_with_no_previous_process_only_writes_the_pid(tmp_path):
    pidfile = tmp_path / "daphne.pid"
    assert replace_previous(pidfile, 4242) is None  # no file yet
    assert replace_previous(pidfile, 4242) is None  # itself
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pidfile.write_text(f"{gone.pid}\n")
    assert replace_previous(pidfile, 4243) is None  # it had stopped already
    pidfile.write_text("not a pid\n")
    assert replace_previous(pidfile, 4244) is None
    assert pidfile.read_text() == "4244\n"


def test_its_own_options_are_taken_and_the_rest_go_to_daphne():
    options, rest = parse(["--port", "8000", "-v", "0", "--proxy-headers", "app:application"])
    assert (options.host, options.port, options.backlog, options.replace) == (
        "127.0.0.1",
        8000,
        1024,
        None,
    )
    assert rest == ["-v", "0", "--proxy-headers", "app:application"]
