"""A local web app to explore recorded runs, act on their data with a curation, retrain and compare runs.

    responsibility explore outputs/train/<run> [more runs] [--port 8765] [--no-browser]

or from Python ``responsibility.explore(run_dir)``. Needs the ``explore`` extra (Starlette, uvicorn, Pillow) and the
``train`` extra (to rebuild the model and retrain). See docs/explorer.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from responsibility.explorer.server import ExplorerServer, explore

__all__ = ["ExplorerServer", "explore"]


def __getattr__(name: str) -> Any:
    # The web stack is imported on first use: `import responsibility.explorer.run` needs no Starlette.
    if name in __all__:
        from responsibility.explorer import server

        return getattr(server, name)
    raise AttributeError(f"module 'responsibility.explorer' has no attribute {name!r}")
