"""Where a store lives: a local directory or an fsspec URL, checked before anything is written or deleted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zarr

from responsibility.errors import StoreExistsError

ATTR_KEY = "responsibility"


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def open_zarr_store(path: str | Path, read_only: bool, storage_options: dict | None) -> Any:
    path = str(path)
    if is_url(path):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(path, storage_options=storage_options, read_only=read_only)
    if path.startswith("file://"):
        path = path[len("file://") :]
    return zarr.storage.LocalStore(path, read_only=read_only)


def check_location(path: str | Path) -> str:
    """Validate a store location before anything is written: a directory path or a known fsspec URL."""
    text = str(path).strip()
    if not text or "\x00" in text:
        raise ValueError(f"invalid store location {str(path)!r}")
    if is_url(text):
        import fsspec

        protocol = text.split("://", 1)[0]
        try:
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError) as exc:
            raise ValueError(f"store URL {text!r}: unsupported or unavailable protocol {protocol!r} ({exc})") from exc
        return text
    local = Path(text[len("file://") :] if text.startswith("file://") else text)
    if local.exists() and not local.is_dir():
        raise ValueError(f"store location {text} is an existing file, not a directory")
    return text


def check_replaceable(path: Path) -> None:
    """``overwrite`` deletes only a responsibility store or an empty directory, never other data."""
    if not path.is_dir():
        raise StoreExistsError(f"{path} exists and is not a directory; not touching it")
    if not any(path.iterdir()):
        return
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        attrs = {}
    if ATTR_KEY not in attrs:
        raise StoreExistsError(f"{path} is a non-empty directory that is not a responsibility store; not touching it")


def check_replaceable_url(store: Any, path: str) -> None:
    """The object-storage twin of :func:`_check_replaceable`: clear only a responsibility store or nothing."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def any_key() -> bool:
        async for _ in store.list():
            return True
        return False

    if not sync(any_key()):
        return
    raw = sync(store.get("zarr.json", prototype=default_buffer_prototype()))
    try:
        attrs = json.loads(raw.to_bytes()).get("attributes", {}) if raw is not None else {}
    except (ValueError, AttributeError):
        attrs = {}
    if not isinstance(attrs, dict) or ATTR_KEY not in attrs:
        raise StoreExistsError(f"{path} holds objects that are not a responsibility store; not deleting them")
