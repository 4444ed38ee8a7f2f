"""What every part of a store shares: its Zarr group, location, static metadata and the committed manifest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import zarr

from responsibility.errors import StoreCorruptError
from responsibility.store._format import MANIFEST_KEY, check_manifest, parse_metadata

T = TypeVar("T")


class StoreState:
    """A store's group and metadata, and the manifest as last read or written by this process.

    ``cache`` holds objects opened from the current group (checked journal arrays); :meth:`reload` empties it.
    """

    def __init__(self, group: zarr.Group, path: str, read_only: bool) -> None:
        self.group = group
        self.path = path
        self.read_only = read_only
        attrs: dict[str, Any] = group.attrs.asdict()
        meta = parse_metadata(attrs, path)
        self.spec = meta.spec
        self.layout = meta.layout
        self.labels_digest = meta.labels_digest
        self.info = meta.info
        self.class_names = meta.class_names
        self.cache: dict[str, Any] = {}
        self.manifest = check_manifest(attrs[MANIFEST_KEY], self.spec, path)

    @property
    def steps(self) -> int:
        return int(self.manifest["steps"])

    @property
    def num_ids(self) -> int:
        return int(self.manifest["ids"])

    @property
    def generation(self) -> int:
        return int(self.manifest["generation"])

    @property
    def num_examples(self) -> int:
        return self.spec.num_examples

    @property
    def exact_r(self) -> bool:
        """Whether the folded R is stored exactly (float32), so that later folds may add to it."""
        return self.layout.r_dtype == "float32"

    def folded_steps(self, name: str) -> int:
        self.spec.param(name)
        entry = self.manifest["folded"].get(name)
        return int(entry["steps"]) if entry else 0

    def fold_path(self, name: str) -> str | None:
        """The group of the current fold of ``name``, or None."""
        entry = self.manifest["folded"].get(name)
        return str(entry["path"]) if entry else None

    def require_writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"{self.path} is open read-only; open it with mode='r+'")

    def write_manifest(self, **changes: Any) -> None:
        self.require_writable()
        manifest = {**self.manifest, **changes, "generation": self.generation + 1}
        # One atomic write of zarr.json (LocalStore writes a temp file and renames) is the commit point.
        self.group.attrs.update({MANIFEST_KEY: manifest})
        self.manifest = manifest

    def reload(self) -> None:
        """Re-read the manifest (e.g. to see steps committed by a training run since opening)."""
        self.group = zarr.open_group(store=self.group.store, mode="r" if self.read_only else "r+")
        self.cache.clear()
        attrs: dict[str, Any] = self.group.attrs.asdict()
        self.manifest = check_manifest(attrs[MANIFEST_KEY], self.spec, self.path)

    def after_newer_commit(self, read: Callable[[], T]) -> T:
        """Run ``read``; if it fails because a writer committed (and cleaned up) meanwhile, re-read once."""
        try:
            return read()
        except StoreCorruptError:
            generation = self.generation
            self.reload()
            if self.generation == generation:
                raise
            return read()
