"""Starting the explorer: open the runs, bind the socket, print the URL (with its per-launch token), serve.

The socket is bound before serving, so a port in use is a clear error and ``port=0`` picks a free one (tests).
Runs open in milliseconds; a background thread then loads each run's data, model and first scores, so the first
view does not wait for them.
"""

from __future__ import annotations

import errno
import secrets
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from responsibility.errors import ServeError
from responsibility.explorer import derived
from responsibility.explorer.app import Explorer, create_app
from responsibility.explorer.run import Run

__all__ = ["ExplorerServer", "explore"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ExplorerServer:
    """A running explorer: its URL (token included), the token, and :meth:`stop`."""

    url: str
    token: str
    explorer: Explorer
    _server: object
    _thread: threading.Thread | None

    def stop(self) -> None:
        """Stop serving (and a retraining job, if one runs)."""
        self.explorer.jobs.shutdown()
        self._server.should_exit = True  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(timeout=10)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is in use; pass another --port (or 0 for any free port)") from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def _warm_up(explorer: Explorer) -> None:
    """Load what the first views need, run by run; errors surface later, on the request that needs the value."""
    for run in list(explorer.runs):
        try:
            run.describe()
            derived.predictions(run)
            derived.score(run, derived.score_names(run)[0])
            if run.output_weight:
                derived.explanations(run)
        except Exception:  # noqa: BLE001 (reported by the view that needs it)
            continue


def explore(
    run_dirs: str | Path | Sequence[str | Path],
    *,
    port: int = 8765,
    host: str = "127.0.0.1",
    open_browser: bool = True,
    block: bool = True,
) -> ExplorerServer:
    """Serve the explorer for one or more Hydra run directories of ``scripts/train.py``.

    Prints the URL to open (it carries the per-launch token that every change needs). ``host`` other than the
    loopback exposes the runs' data to the network: a warning is printed. With ``block=False`` the server runs in a
    background thread and the returned :class:`ExplorerServer` stops it; otherwise this returns after Ctrl-C.
    """
    import uvicorn

    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    explorer = Explorer([Run(d) for d in dirs])
    token = secrets.token_urlsafe(24)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    if host in ("0.0.0.0", "::"):
        allowed, shown = ["*"], "127.0.0.1"
    else:
        allowed, shown = sorted({host, *LOOPBACK}), host
    if host not in LOOPBACK:
        print(f"warning: serving on {host}: anyone who can reach this port can read the runs' data", file=sys.stderr)
    app = create_app(explorer, token, allowed)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{bound}/?token={token}"
    threading.Thread(target=_warm_up, args=(explorer,), daemon=True, name="explorer-warm-up").start()
    print(f"responsibility explorer: {url}", flush=True)
    if not block:
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="explorer")
        thread.start()
        while not server.started and thread.is_alive():
            time.sleep(0.02)
        return ExplorerServer(url, token, explorer, server, thread)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        explorer.jobs.shutdown()
    return ExplorerServer(url, token, explorer, server, None)
