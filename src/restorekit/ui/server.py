"""The HTTP side of the web UI: a standard-library threaded server with a handful of JSON routes and
three static files. Nothing is fetched from outside: the page, its script and its styles are served
from ``ui/static``.

Routes (all answers to the API are JSON, errors included, as ``{"error": "..."}``):

- ``GET /`` the page; ``GET /static/app.js``, ``/static/style.css``
- ``GET /api/models`` the task and model menus with model cards
- ``GET /api/samples`` bundled sample names; ``GET /samples/NAME`` one sample's bytes
- ``POST /api/restore?model=KEY&tile=N&tile_overlap=N&tta=0|1&precision=P&filename=NAME`` with the image
  file as the body -> ``{"id": ...}``
- ``GET /api/jobs/ID`` state; ``/api/jobs/ID/before.png``, ``/after.png`` 8-bit previews;
  ``/api/jobs/ID/result`` the restored file in its original format and bit depth

Two cheap guards keep other web pages from using the server through the user's browser: POSTs must
carry an ``X-Restorekit`` header (a cross-origin page cannot add one without a CORS preflight, which
is never granted), and when bound to loopback the ``Host`` header must name loopback (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..errors import RestorekitError
from ..inference import RestoreOptions
from .jobs import Catalogue, JobRunner, Options, list_samples, sample_file

log = logging.getLogger("restorekit.ui")

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES: dict[str, tuple[str, str]] = {  # URL path -> (file, content type); nothing else is served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".tif": "image/tiff", ".tiff": "image/tiff", ".bmp": "image/bmp"}
JOB_ROUTE = re.compile(r"^/api/jobs/([0-9a-f]{32})(?:/(before\.png|after\.png|result))?$")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
DRAIN_LIMIT = 8 << 30  # an oversized upload up to this size is read (and dropped) so the page gets the message


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def content_disposition(filename: str) -> str:
    """An attachment header for any file name: an ASCII ``filename`` for old clients and the exact
    name as RFC 5987 ``filename*=UTF-8''...`` (RFC 6266). HTTP headers are Latin-1 on the wire, so
    a name such as ``图片.png`` sent as-is cannot be encoded at all."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class UIServer(ThreadingHTTPServer):
    """The server plus what its handlers share: the catalogue, the job runner and the limits."""

    daemon_threads = True
    # socketserver's default listen backlog is 5: a page dropping 20 files at once overflowed it and
    # some connections were reset. Handler threads are cheap; the job queue already runs one at a time.
    request_queue_size = 128

    def __init__(self, host: str, port: int, catalogue: Catalogue, max_pixels: int | None,
                 max_upload_bytes: int) -> None:
        # Set before binding: when binding fails, the base class calls server_close(), which needs them.
        self.catalogue = catalogue
        self.runner = JobRunner(catalogue, max_pixels)
        self.max_upload_bytes = max_upload_bytes
        self.loopback_only = is_loopback(host)
        if ":" in host:  # an IPv6 address such as ::1
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.runner.close()


class Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"
    server_version = "restorekit-ui"

    def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
        log.debug("%s - %s", self.address_string(), format % args)

    # --- answers -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _host_ok(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_NAMES or is_loopback(name)

    # --- routing -----------------------------------------------------------------------------
    # do_GET etc.: the names http.server dispatches to.
    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_HEAD(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _guarded(self, handler: Any) -> None:
        """Every request ends in an answer; a bug becomes a 500 with one line, never a traceback."""
        try:
            if not self._host_ok():
                self._error(HTTPStatus.FORBIDDEN, "this server only answers requests addressed to localhost")
                return
            handler()
        except RestorekitError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away
        except Exception as exc:
            log.exception("request %s %s failed", self.command, self.path)
            try:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"unexpected error ({type(exc).__name__}); see the server log")
            except OSError:
                pass

    def _get(self) -> None:
        path = urlsplit(self.path).path
        if path in STATIC_FILES:
            name, content_type = STATIC_FILES[path]
            self._send(HTTPStatus.OK, (STATIC_DIR / name).read_bytes(), content_type)
        elif path == "/api/models":
            self._json(self.server.catalogue.describe())
        elif path == "/api/samples":
            self._json({"samples": list_samples()})
        elif path.startswith("/samples/"):
            self._sample(unquote(path[len("/samples/"):]))
        elif match := JOB_ROUTE.match(path):
            self._job(match.group(1), match.group(2))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    def _sample(self, name: str) -> None:
        file = sample_file(name)
        if file is None:
            self._error(HTTPStatus.NOT_FOUND, f"no such sample: {name}")
            return
        self._send(HTTPStatus.OK, file.read_bytes(), IMAGE_TYPES.get(file.suffix.lower(), "application/octet-stream"))

    def _job(self, job_id: str, part: str | None) -> None:
        job = self.server.runner.get(job_id)
        if job is None:
            self._error(HTTPStatus.NOT_FOUND, "this run is gone (the server keeps only the latest few)")
        elif part is None:
            self._json(job.state())
        elif job.status != "done" and part != "before.png":
            self._error(HTTPStatus.CONFLICT, f"the run is not finished ({job.stage})")
        elif part == "before.png" and not job.before:
            self._error(HTTPStatus.CONFLICT, "the input is not decoded yet")
        elif part == "before.png":
            self._send(HTTPStatus.OK, job.before, "image/png")
        elif part == "after.png":
            self._send(HTTPStatus.OK, job.after, "image/png")
        else:
            assert job.result is not None
            content_type = IMAGE_TYPES.get(job.result.suffix.lower(), "application/octet-stream")
            self._send(HTTPStatus.OK, job.result.read_bytes(), content_type,
                       {"Content-Disposition": content_disposition(job.download_name)})

    def _post(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/restore":
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {url.path}")
            return
        if self.headers.get("X-Restorekit") != "1":
            self._error(HTTPStatus.FORBIDDEN, "requests must come from the restorekit page")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, "the upload has no valid Content-Length")
            return
        if length > self.server.max_upload_bytes:
            # Read and discard the body (never stored) before answering: a browser whose upload is
            # cut off shows a network error instead of this message. Past DRAIN_LIMIT, just close.
            self.close_connection = True
            if length <= DRAIN_LIMIT:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            limit = self.server.max_upload_bytes / 2**20
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"the file is {length / 2**20:.1f} MiB; this server accepts up to {limit:.0f} MiB")
            return
        data = self.rfile.read(length) if length else b""
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        restore = RestoreOptions(tile=_int(query, "tile"), tile_overlap=_int(query, "tile_overlap"),
                                 tta=query.get("tta", "0") in ("1", "true", "on"))
        options = Options(restore, precision=query.get("precision", "fp32"))
        job = self.server.runner.submit(data, query.get("filename", "image.png"), query.get("model", ""), options)
        self._json({"id": job.id}, HTTPStatus.ACCEPTED)


def _int(query: dict[str, str], key: str) -> int | None:
    """A whole-number option; empty or absent means automatic (None)."""
    value = query.get(key, "").strip()
    if value in ("", "auto"):
        return None
    try:
        return int(value)
    except ValueError:
        raise RestorekitError(f"{key} must be a whole number, not {value!r}") from None


def start(server: UIServer) -> threading.Thread:
    """Serve in a background thread (tests, notebooks); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="restorekit-ui", daemon=True)
    thread.start()
    return thread
