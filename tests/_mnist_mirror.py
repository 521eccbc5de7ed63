"""A stand-in for torchvision's MNIST mirrors: an HTTP server on 127.0.0.1 for the download tests.

It serves only the files it is given (from memory; anything else is a 404), at most
``MAX_REQUESTS`` requests, and records what was asked for and what was sent in full, so a test
can show that the real download path fetched every file from it and from nowhere else. Also the
checksums a verified download must match (``expected_sha256``).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vae_core.data.sources import FILES

MAX_REQUESTS = 64


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        mirror = self.server.mirror
        name = self.path.lstrip("/")
        with mirror.lock:
            mirror.requests.append(name)
            too_many = len(mirror.requests) > MAX_REQUESTS
        if too_many:
            self.send_error(503, "test mirror: too many requests")
            return
        if mirror.stalled:  # accept, then never answer (released when the test ends)
            mirror.release.wait(timeout=30)
            return
        body = mirror.files.get(name)
        if body is None:
            self.send_error(404, "File not found")
            return
        cut = mirror.drop_after.get(name)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))  # the full size, even when cut
        self.end_headers()
        try:
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
        except OSError:  # the client hung up (torchvision's redirect probe reads only headers)
            return
        if cut is None:
            with mirror.lock:
                mirror.served.append(name)
        self.close_connection = True

    def log_message(self, format, *args) -> None:  # noqa: A002 (http.server's signature)
        pass  # keep the test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mirror: MirrorServer

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up mid-body is expected; nothing to print


class MirrorServer:
    """``files`` maps a URL name (``t10k-labels-idx1-ubyte.gz``) to the bytes served for it."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.drop_after: dict[str, int] = {}  # name -> bytes sent before the connection drops
        self.stalled = False
        self.requests: list[str] = []  # every name asked for, in order
        self.served: list[str] = []  # names whose whole body was sent
        self.lock = threading.Lock()
        self.release = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.mirror = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The mirror's base URL; torchvision appends the file name to it."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def expected_sha256(mnist_dir: Path) -> dict[str, str]:
    """SHA-256 of the decompressed files, from the folder's SHA256SUMS (independent of vae_core);
    a folder without one: computed from its .gz files."""
    sums = mnist_dir / "SHA256SUMS"
    if sums.is_file():
        pairs = (line.split() for line in sums.read_text().splitlines() if line.strip())
        return {name.lstrip("*"): digest for digest, name in pairs}
    return {n: hashlib.sha256(gzip.decompress((mnist_dir / f"{n}.gz").read_bytes())).hexdigest()
            for n in FILES}
