"""A stand-in for Hugging Face's `resolve` endpoint on loopback, with faults on demand."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CDN = "/cdn-lfs/"  # where redirected downloads go, like the hub's separate CDN host
RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/main/")


@dataclass
class Hub:
    """What the server holds and how it misbehaves; requests are recorded for assertions."""

    files: dict[str, bytes] = field(default_factory=dict)  # "OWNER/REPO/FILE" -> bytes
    wrong_sha: bool = False  # publish a hash that is not the file's
    publish_sha: bool = True
    redirect: bool = False  # answer resolve with a 302 to /cdn-lfs/…, as the hub does for LFS
    cut_after: int | None = None  # the next body stops after this many bytes, then the socket
    ignore_range: bool = False  # answer every request with the whole file (200)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    url: str = ""

    def add(self, repo: str, file: str, data: bytes) -> None:
        self.files[f"{repo}/{file}"] = data

    def sha_for(self, data: bytes) -> str:
        return "f" * 64 if self.wrong_sha else hashlib.sha256(data).hexdigest()


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            hub.requests.append((self.path, self.headers.get("Range")))
            cdn = self.path.startswith(CDN)
            key = self.path.removeprefix(CDN) if cdn else RESOLVE.sub(r"\1/", self.path)
            data = hub.files.get(key)
            if data is None:
                self._reply(404, b"Entry not found")
                return
            if hub.redirect and not cdn:
                self.send_response(302)
                self.send_header("Location", CDN + key)
                self._publish(data)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send_file(data, cdn)

        def _publish(self, data: bytes) -> None:
            if hub.publish_sha:
                self.send_header("X-Linked-Etag", f'"{hub.sha_for(data)}"')

        def _send_file(self, data: bytes, cdn: bool) -> None:
            start = 0
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if match and not hub.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            if cdn:
                # A CDN's ETag is its own hash, never the file's sha256: must not be trusted.
                self.send_header("ETag", '"' + "0" * 64 + '"')
            else:
                self._publish(data)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if hub.cut_after is not None:
                body = body[: hub.cut_after]
                hub.cut_after = None
                self.close_connection = True  # the socket closes with the body unfinished
            self.wfile.write(body)

        def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serve_hub() -> Iterator[Hub]:
    hub = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
