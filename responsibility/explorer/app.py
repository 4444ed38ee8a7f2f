"""The explorer's web app (Starlette): JSON endpoints for the views and actions, and the static front end.

Safety rules, enforced here for every request:

- A per-launch token is required for every request that changes anything (any method but GET and HEAD), in the
  ``X-Explorer-Token`` header; without it the answer is 403 and nothing changes. The browser learns the token from
  the URL the server prints (``?token=...``); a custom header also makes cross-site requests need a CORS preflight,
  which this app never grants.
- Only the hosts the server was started for are answered (``TrustedHostMiddleware``), against DNS rebinding.
- Every response carries a Content-Security-Policy that allows only the app's own scripts, styles and images (no
  inline script, nothing from elsewhere), and the front end builds the page with ``textContent``, never with
  markup from data, so class names, notes and file names are shown as text.
- Clients name runs by index and examples by id; the server checks both and never takes a file path from a client.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from responsibility.curation import Curation
from responsibility.errors import CurationError
from responsibility.explorer.jobs import Busy, Jobs
from responsibility.explorer.run import Run
from responsibility.explorer.thumbnails import ThumbnailCache

__all__ = ["TOKEN_HEADER", "Explorer", "HTTPError", "create_app"]

TOKEN_HEADER = "X-Explorer-Token"
SAFE_METHODS = {"GET", "HEAD"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class HTTPError(Exception):
    """A request the server refuses, with its status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Explorer:
    """What one app serves: the runs (retraining adds more), their working curations and the retraining job."""

    def __init__(self, runs: list[Run]) -> None:
        if not runs:
            raise ValueError("the explorer needs at least one run directory")
        self.runs = list(runs)
        self.thumbnails = ThumbnailCache()
        self.jobs = Jobs(self.add_run)
        # Each run's working curation, with the (mtime, size) of curation.json it was read from or saved as.
        self._curations: dict[int, tuple[Curation, tuple[int, int] | None]] = {}
        self._lock = threading.RLock()

    def add_run(self, path: Path) -> int:
        run = Run(path)
        with self._lock:
            self.runs.append(run)
            return len(self.runs) - 1

    def run(self, r: int) -> Run:
        with self._lock:
            if not 0 <= r < len(self.runs):
                raise HTTPError(404, f"no run {r}: the app has runs 0..{len(self.runs) - 1}")
            return self.runs[r]

    def curation(self, r: int) -> Curation:
        """Run ``r``'s working curation (from ``curation.json`` if it exists), read again when another program,
        such as ``responsibility curate``, changed the file since."""
        run = self.run(r)
        with self._lock:
            seen = _signature(run.curation_path)
            held = self._curations.get(r)
            if held is None or held[1] != seen:
                self._curations[r] = (run.curation(), seen)
            return self._curations[r][0]

    def change_curation(self, r: int, change: Any) -> Curation:
        """Apply ``change(curation)`` and save; if anything fails, the file and the app keep the previous state."""
        run = self.run(r)
        with self._lock:
            cur = self.curation(r)
            before = cur.to_json()
            try:
                change(cur)
                cur.save(run.curation_path)
            except BaseException:
                self._curations[r] = (Curation.from_json(before), self._curations[r][1])
                raise
            self._curations[r] = (cur, _signature(run.curation_path))
            return cur


def _signature(path: Path) -> tuple[int, int] | None:
    """When and how big a file was last written (None: no file)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


class Guard:
    """ASGI middleware: the token check for changing requests, and the security headers on every response."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS:
            given = Headers(scope=scope).get(TOKEN_HEADER, "").encode()
            if not secrets.compare_digest(given, self.token):
                response = JSONResponse(
                    {"error": f"this request changes data and needs the app's token ({TOKEN_HEADER} header)"},
                    status_code=403,
                    headers=SECURITY_HEADERS,
                )
                await response(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    return _error(getattr(exc, "status", 500), str(exc))


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return _error(400, str(message))


async def _busy(request: Request, exc: Exception) -> JSONResponse:
    return _error(409, str(exc))


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return _error(404, str(exc))


def create_app(explorer: Explorer, token: str, allowed_hosts: list[str]) -> Starlette:
    """The ASGI app serving ``explorer``; requests that change anything need ``token``."""
    from responsibility.explorer.routes import routes

    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(Guard, token=token),
            Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts),
        ],
        exception_handlers={
            HTTPError: _http_error,
            CurationError: _bad_request,
            Busy: _busy,
            ValueError: _bad_request,
            KeyError: _bad_request,
            LookupError: _not_found,
        },
    )
    app.state.explorer = explorer
    return app
