"""`vaekit serve`: the explorer page and its JSON API on the standard library's threading HTTP server
(no web framework: the page is one file with its script and style inside, and the API a dozen routes).

Routes: GET / (the page), GET /api/runs, GET /api/run/<i>/<request>?..., POST /api/run/<i>/complete
(a hand-drawn mask in the JSON body), GET /api/run/<i>/file/<name> (the run's curves and report.html
only). A bad request gets a 4xx with {"error": message}; an unexpected failure a 500 with its message,
the server going on; bodies and query strings are bounded."""

from __future__ import annotations

import json
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

from .api import Explorer, RequestError

MAX_BODY = 256 * 1024  # bytes of a POST body (a 64x64 mask as JSON is ~17 KB)
MAX_QUERY = 8 * 1024  # bytes of a query string
GET_REQUESTS = ("curves", "test_image", "decode", "sample", "interpolate", "style", "stages", "canvas", "complete")


def page() -> bytes:
    return resources.files("vaekit.explorer").joinpath("page.html").read_bytes()


def make_handler(explorer: Explorer, quiet: bool = False):
    class Handler(BaseHTTPRequestHandler):
        server_version = "vaekit-explorer"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            if not quiet:
                sys.stderr.write(f"vaekit serve: {self.address_string()} {format % args}\n")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # nothing of the page comes from elsewhere, and nothing may: the browser is told so
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                             "script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802 - http.server's name
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

        def _handle(self, method: str) -> None:
            try:
                status, body, content_type = self._route(method)
                self._send(status, body, content_type)
            except RequestError as e:
                self._json(e.status, {"error": str(e)})
            except Exception as e:  # noqa: BLE001 - one request fails, the server goes on
                traceback.print_exc(file=sys.stderr)
                self._json(500, {"error": f"{type(e).__name__}: {e}"})

        def _route(self, method: str):
            if len(self.path) > MAX_QUERY:
                raise RequestError(414, f"request line longer than {MAX_QUERY} bytes")
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            parts = [p for p in url.path.split("/") if p]
            if method == "GET" and not parts:
                return 200, page(), "text/html; charset=utf-8"
            if method == "GET" and parts == ["api", "runs"]:
                return 200, json.dumps(explorer.runs_info()).encode(), "application/json"
            if len(parts) >= 4 and parts[:2] == ["api", "run"] and parts[3] == "file" and method == "GET":
                if len(parts) != 5:
                    raise RequestError(404, "a run's file is /api/run/<i>/file/<name>")
                data, content_type = explorer.file(explorer.run(parts[2]), parts[4])
                return 200, data, content_type
            if len(parts) == 4 and parts[:2] == ["api", "run"]:
                run, request = explorer.run(parts[2]), parts[3].replace("-", "_")
                if method == "POST" and request == "complete":
                    return 200, json.dumps(explorer.complete(run, params, self._body())).encode(), "application/json"
                if method == "GET" and request in GET_REQUESTS:
                    handler = getattr(explorer, request)
                    result = handler(run) if request == "curves" else (
                        handler(run, params, None) if request == "complete" else handler(run, params))
                    return 200, json.dumps(result).encode(), "application/json"
            if method not in ("GET", "POST"):
                raise RequestError(405, f"{method} is not served")
            raise RequestError(404, f"nothing at {url.path[:80]!r}")

        def _body(self) -> dict:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise RequestError(400, "bad Content-Length") from None
            if length > MAX_BODY:
                raise RequestError(413, f"request body larger than {MAX_BODY} bytes")
            if length < 0:
                raise RequestError(400, "bad Content-Length")
            raw = self.rfile.read(length)
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                raise RequestError(400, "the body must be JSON") from None

    return Handler


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False):
    server = ThreadingHTTPServer((host, port), make_handler(explorer, quiet))
    server.daemon_threads = True
    return server


def serve(run_dirs, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu") -> int:
    print(f"loading {len(run_dirs)} run(s) ...", file=sys.stderr, flush=True)
    explorer = Explorer(run_dirs, device)
    try:
        server = make_server(explorer, host, port)
    except OSError as e:  # the port taken, an address not of this machine
        from ..errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host") from None
    print(f"vaekit explorer: http://{host}:{server.server_address[1]}/  (Ctrl-C to stop)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: anyone who can reach this machine can use the explorer",
              file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
