"""A department's REST/JSON API on a real loopback socket, served from a thread.

Routes (every one needs the header ``X-Api-Token: <token>``, else 401):

- ``GET  /api/v1/residents/<key>?kind=<kind>``: ``{"code": 0, "data": {"items": [...]}}``,
  404 when the key is unknown;
- ``POST /api/v1/query`` with ``{"idNo": <key>}``: the same answer;
- ``GET  /api/v1/changes?cursor=<c>&limit=<n>``: ``{"data": {"items": [...]},
  "next": <cursor>, "more": <bool>}``;
- ``GET  /flaky/residents/<key>``: 503 for the first `flaky_failures` calls, then 200;
- ``GET  /broken/residents/<key>``: always 500;
- ``GET  /html/residents/<key>``: 200 with an HTML body;
- ``GET  /moved/residents/<key>``: 302 elsewhere;
- ``GET  /slow/residents/<key>``: answers after `slow_seconds`.

`hits` counts requests by route prefix so tests can see retries. With `signer` (a function
of one item returning a JWS or None) every object item of the residents and changes
answers carries ``"signature": <JWS>`` beside its fields, as a department that signs does.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "s3cret-token"

RESIDENTS: dict[str, list[Any]] = {
    "11010519491231002X": [
        {
            "recordNo": "R1",
            "idNo": "11010519491231002X",
            "xm": "王伟",
            "csrq": "1949-12-31",
            "hjdz": {"city": "北京市", "street": "东城区某街道1号"},
            "updated": "2024-05-01 08:00:00",
        },
        # A second record filed with the key full-width and a lower-case check letter.
        {
            "recordNo": "R1b",
            "idNo": "１１０１０５１９４９１２３１００２ｘ",
            "xm": "王伟",
            "csrq": "1949-12-31",
        },
        # Broken check character: rejected, the rest of the answer stands.
        {"recordNo": "R2", "idNo": "110105194912310021", "xm": "王伟"},
        {"idNo": "11010519491231002X", "xm": "无编号"},
        "not an object",
    ],
}

CHANGES: list[Any] = [
    {"recordNo": "R1", "idNo": "11010519491231002X", "xm": "王伟", "csrq": "1949-12-31"},
    {"recordNo": "R3", "idNo": "320106199003071234", "xm": "张敏", "csrq": "1990-03-07"},
    {"recordNo": "R4", "idNo": "bad-key", "xm": "坏数据"},
    {"recordNo": "R5", "deleted": True},
    {"recordNo": "R6", "idNo": "440304198511204567", "xm": "刘洋", "csrq": "1985-11-20"},
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (the adapter's timeout test) is expected, not news.
        pass


class HttpDepartment:
    """Start with `start()`, stop with `stop()`; `base_url` is where it listens."""

    def __init__(
        self,
        *,
        flaky_failures: int = 1,
        slow_seconds: float = 1.0,
        signer: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        self.flaky_failures = flaky_failures
        self.signer = signer
        self.slow_seconds = slow_seconds
        self.hits: Counter[str] = Counter()
        self.bodies: list[Any] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HttpDepartment:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def count(self, route: str) -> int:
        with self._lock:
            self.hits[route] += 1
            return self.hits[route]

    def signed(self, item: Any) -> Any:
        if self.signer is None or not isinstance(item, dict):
            return item
        signature = self.signer(item)
        return item if signature is None else {**item, "signature": signature}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        department = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
                data = (
                    json.dumps(body, ensure_ascii=False).encode()
                    if content_type == "application/json"
                    else str(body).encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", f"{content_type}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                route = "/".join(parts[:2])
                department.count(route)
                if self.headers.get("X-Api-Token") != TOKEN:
                    self._send(401, {"code": 401, "message": "bad token"})
                    return
                if method == "POST" and parts == ["api", "v1", "query"]:
                    department.bodies.append(body)
                    self._residents(str((body or {}).get("idNo", "")))
                elif parts[:3] == ["api", "v1", "residents"] and len(parts) == 4:
                    if query.get("kind") != "ID_CARD":
                        self._send(400, {"code": 400, "message": "kind must be ID_CARD"})
                        return
                    self._residents(parts[3])
                elif parts == ["api", "v1", "changes"]:
                    self._changes(query)
                elif parts[0] == "flaky":
                    if department.hits[route] <= department.flaky_failures:
                        self._send(503, {"code": 503, "message": "try later"})
                    else:
                        self._residents(parts[-1])
                elif parts[0] == "broken":
                    self._send(500, {"code": 500, "message": "NullPointerException"})
                elif parts[0] == "moved":
                    self.send_response(302)
                    self.send_header("Location", "/api/v2/residents")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif parts[0] == "html":
                    self._send(200, "<html><body>维护中</body></html>", "text/html")
                elif parts[0] == "slow":
                    time.sleep(department.slow_seconds)
                    self._residents(parts[-1])
                else:
                    self._send(404, {"code": 404})

            def _residents(self, key: str) -> None:
                if key not in RESIDENTS:
                    self._send(404, {"code": 404, "message": "no such resident"})
                    return
                items = [department.signed(item) for item in RESIDENTS[key]]
                self._send(200, {"code": 0, "data": {"items": items}})

            def _changes(self, query: dict[str, str]) -> None:
                start = int(query.get("cursor", "c0").removeprefix("c"))
                limit = int(query["limit"])
                items = [department.signed(item) for item in CHANGES[start : start + limit]]
                end = start + len(items)
                self._send(
                    200, {"data": {"items": items}, "next": f"c{end}", "more": end < len(CHANGES)}
                )

        return Handler
