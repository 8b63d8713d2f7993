"""A TCP relay in front of a sandbox's NB unix socket that acts at the moment a client sends a transaction.

Why: "NB dies after the transaction was sent" needs that exact moment in a separate ``zonectl`` process.
The relay copies bytes both ways and watches the client's stream for an OVSDB ``transact`` request; then
it does what the test asked, to the real ovsdb-server, by the pid in its pidfile:

* ``stop``: SIGSTOP the server, then forward the request (it hangs with the request in its socket);
* ``kill-before``: SIGKILL the server before the request reaches it (NB never sees it);
* ``kill-after``: forward it, wait for the server's answer (NB has committed), SIGKILL the server and drop
  the answer.

Only the first transaction is acted on; connections made later (a reconnect, a second client) are relayed
as they are, or closed at once while the server is gone.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

ACTIONS = ("stop", "kill-before", "kill-after")


class NbRelay:
    def __init__(self, nb_socket: Path, pidfile: Path, action: str) -> None:
        assert action in ACTIONS
        self.nb_socket = nb_socket
        self.pidfile = pidfile
        self.action = action
        self.acted = threading.Event()  # the first transaction arrived and the action was taken
        self.pid: int | None = None  # the server acted on
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.remote = f"tcp:127.0.0.1:{self._listener.getsockname()[1]}"
        self._closing = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        with self._lock:
            for s in self._socks:
                s.close()

    def __enter__(self) -> "NbRelay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- relaying ----------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            try:
                server.connect(str(self.nb_socket))
            except OSError:  # the server is gone: the client sees a closed connection and retries
                client.close()
                server.close()
                continue
            with self._lock:
                self._socks += [client, server]
            state = {"drop_answer": False}
            threading.Thread(target=self._upstream, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, state), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        tail = b""
        while True:
            data = _recv(client)
            if not data:
                return _close(client, server)
            seen = b'"transact"' in tail + data and not self.acted.is_set()
            tail = data[-16:]
            if seen and self.action == "kill-before":
                self._signal(signal.SIGKILL)
                return _close(client, server)
            if seen and self.action == "kill-after":
                state["drop_answer"] = True
            if seen and self.action == "stop":  # before forwarding: the server must not answer first
                self._signal(signal.SIGSTOP)
            if not _send(server, data):
                return _close(client, server)

    def _downstream(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        while True:
            data = _recv(server)
            if not data:
                return _close(client, server)
            if state["drop_answer"] and b'"result"' in data:  # the server answered the transaction: it committed
                self._signal(signal.SIGKILL)
                return _close(client, server)
            if not _send(client, data):
                return _close(client, server)

    def _signal(self, sig: int) -> None:
        self.pid = int(self.pidfile.read_text().strip())
        os.kill(self.pid, sig)
        self.acted.set()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
