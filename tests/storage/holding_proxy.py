"""A TCP proxy in front of the S3 server that can keep the answer to one upload from its
uploader: the bucket stores the recording, the worker never hears so (and is killed while
it waits, as a machine dies between the upload and the bookkeeping)."""

from __future__ import annotations

import socket
import threading

from devtools.processes import free_port


class HoldingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.hold_next_upload = threading.Event()  # armed by a test
        self.holding = threading.Event()  # set once an answer is being kept back
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="holding-proxy").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            hold = {"answer": False}
            threading.Thread(
                target=self._requests, args=(client, upstream, hold), daemon=True
            ).start()
            threading.Thread(
                target=self._answers, args=(upstream, client, hold), daemon=True
            ).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, hold: dict) -> None:
        # On a keep-alive connection a client sends its next request only after the answer
        # to the last: a chunk that starts with a request line starts a new request.
        try:
            while data := client.recv(65536):
                first_line = data.split(b"\r\n", 1)[0]
                if (
                    first_line.startswith(b"PUT ")
                    and b"/shares/" in first_line
                    and self.hold_next_upload.is_set()
                ):
                    self.hold_next_upload.clear()
                    hold["answer"] = True
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()

    def _answers(self, upstream: socket.socket, client: socket.socket, hold: dict) -> None:
        try:
            while data := upstream.recv(65536):
                if hold["answer"]:
                    self.holding.set()
                    continue  # the object is stored; the uploader is never told
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()

    def close(self) -> None:
        self._server.close()
        for sock in self._sockets:
            sock.close()
