"""A small HTTP proxy for tests, run as its own process: CONNECT tunnels and absolute-URL
forwarding, each request logged, so a test can tell that a call really went through a proxy.

    python -m tests.proxy_server --log FILE [--deny-port PORT] [--user USER:PASS]

Prints its port on stdout once listening. ``--deny-port`` answers CONNECT to that port with
403 (a corporate proxy refusing a destination); ``--user`` demands Basic credentials (407).
"""

from __future__ import annotations

import argparse
import base64
import socket
import socketserver
import sys
import threading
from pathlib import Path


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(socketserver.BaseRequestHandler):
    server: ProxyServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        head, rest = _read_head(conn)
        if not head:
            return
        lines = head.split(b"\r\n")
        method, target, _version = lines[0].decode("latin-1").split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.decode("latin-1").partition(":") for line in lines[1:])
        }
        self.server.log(f"{method} {target} auth={headers.get('proxy-authorization', '-')}")
        if self.server.credentials is not None:
            expected = "Basic " + base64.b64encode(self.server.credentials.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            if int(port) == self.server.deny_port:
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._relay(conn, upstream, rest)
            return
        # absolute-form: one request per connection, forwarded in origin-form
        _scheme, _, authority_path = target.partition("://")
        authority, slash, path = authority_path.partition("/")
        host, _, port = authority.rpartition(":")
        kept = [line for line in lines[1:] if not line.lower().startswith(b"proxy-")]
        kept = [line for line in kept if not line.lower().startswith(b"connection:")]
        request_line = f"{method} {slash}{path} HTTP/1.1".encode()
        upstream_head = b"\r\n".join([request_line, *kept, b"Connection: close"])
        try:
            upstream = socket.create_connection((host, int(port or 80)), timeout=5)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        upstream.sendall(upstream_head + b"\r\n\r\n" + rest)
        self._relay(conn, upstream, b"")

    @staticmethod
    def _relay(conn: socket.socket, upstream: socket.socket, pending: bytes) -> None:
        conn.settimeout(None)
        upstream.settimeout(None)
        if pending:
            upstream.sendall(pending)
        back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
        back.start()
        _pipe(conn, upstream)
        back.join()
        upstream.close()


class ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, log_path: Path, deny_port: int | None, credentials: str | None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.log_path = log_path
        self.deny_port = deny_port
        self.credentials = credentials
        self._log_lock = threading.Lock()

    def log(self, line: str) -> None:
        with self._log_lock, self.log_path.open("a") as handle:
            handle.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--deny-port", type=int, default=None)
    parser.add_argument("--user", default=None)
    args = parser.parse_args()
    args.log.touch()
    server = ProxyServer(args.log, args.deny_port, args.user)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
