"""The store's metadata format: version, static metadata with its digest, and the manifest's rules.

``zarr.json`` of the root group holds two attributes: ``"responsibility"`` (static: format version, spec, layout,
labels digest, info; digested so that any later edit is detected) and ``"manifest"`` (what is committed: steps,
ids, the fold generation of each parameter; rewritten atomically at every commit).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from responsibility import __version__
from responsibility.choices import SIGNS
from responsibility.errors import StoreCorruptError
from responsibility.store.layout import Layout
from responsibility.store.location import ATTR_KEY
from responsibility.store.spec import RecordingSpec

# 2: layout.journal_dtype and dimension names (format 1 stores are read as float32 journals).
# 3: layout.topk_signs, the signs with a top-k index (format 1 and 2 stores index all three).
# 4: layout.journal_delta and journal/scales (format 1 to 3 stores journal every Δw).
FORMAT_VERSION = 4
MANIFEST_KEY = "manifest"


@dataclass(frozen=True)
class Metadata:
    """A store's static metadata, checked."""

    spec: RecordingSpec
    layout: Layout
    labels_digest: str | None
    info: dict[str, Any]
    class_names: list[str] | None


def metadata_digest(meta: dict[str, Any]) -> str:
    """Digest of a store's static metadata (everything but the digest itself): any later edit is detected."""
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


def labels_digest(labels: np.ndarray | None) -> str | None:
    """A short content hash of the labels, so a store notices a changed dataset."""
    if labels is None:
        return None
    return hashlib.sha1(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


def check_int(value: Any, what: str) -> int:
    """A non-negative JSON integer (not a bool, float or numeric string), else StoreCorruptError."""
    if type(value) is not int or value < 0:
        raise StoreCorruptError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def new_metadata(
    spec: RecordingSpec,
    layout: Layout,
    labels: np.ndarray | None,
    info: dict[str, Any] | None,
    class_names: list[str] | None,
) -> dict[str, Any]:
    """The static metadata of a new store, digested."""
    meta = {
        "format": FORMAT_VERSION,
        "library_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_json(),
        "layout": layout.to_json(),
        "labels_digest": labels_digest(labels),
        "info": info or {},
        "class_names": class_names,
    }
    meta["digest"] = metadata_digest(meta)
    return meta


def empty_manifest() -> dict[str, Any]:
    return {"generation": 0, "steps": 0, "ids": 0, "folded": {}}


def parse_metadata(attrs: dict[str, Any], path: str) -> Metadata:
    """The checked static metadata of the group at ``path`` (attributes ``attrs``), else StoreCorruptError."""
    if not isinstance(attrs.get(ATTR_KEY), dict) or not isinstance(attrs.get(MANIFEST_KEY), dict):
        raise StoreCorruptError(f"{path} is a Zarr group but not a responsibility store (no metadata)")
    meta = attrs[ATTR_KEY]
    if check_int(meta.get("format"), f"{path}/zarr.json: format") > FORMAT_VERSION:
        raise StoreCorruptError(
            f"{path} has store format {meta['format']}, newer than this library understands "
            f"({FORMAT_VERSION}); upgrade responsibility"
        )
    if "digest" not in meta:
        raise StoreCorruptError(f"{path}/zarr.json: no metadata digest (written by a pre-release version?)")
    if meta["digest"] != metadata_digest(meta):
        raise StoreCorruptError(f"{path}/zarr.json: the store's metadata was altered (digest mismatch)")
    try:
        return Metadata(
            spec=RecordingSpec.from_json(meta["spec"]),
            layout=_layout(meta),
            labels_digest=meta.get("labels_digest"),
            info=dict(meta.get("info", {})),
            class_names=_class_names(meta.get("class_names")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoreCorruptError(f"{path}/zarr.json: malformed responsibility metadata ({exc!r})") from exc


def _layout(meta: dict[str, Any]) -> Layout:
    fields = dict(meta["layout"])
    if meta["format"] < 3:
        fields.setdefault("topk_signs", list(SIGNS))
    return Layout(**fields)


def _class_names(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"class_names must be a list of strings, got {value!r}")
    return value


def check_manifest(m: dict[str, Any], spec: RecordingSpec, path: str) -> dict[str, Any]:
    """The manifest ``m`` of the store at ``path``, checked against ``spec``, else StoreCorruptError."""
    where = f"{path}/zarr.json: manifest"
    steps, ids = check_int(m.get("steps"), f"{where} steps"), check_int(m.get("ids"), f"{where} ids")
    generation = check_int(m.get("generation"), f"{where} generation")
    folded = m.get("folded")
    if not isinstance(folded, dict):
        raise StoreCorruptError(f"{where}: 'folded' is not a mapping")
    for name, entry in folded.items():
        if name not in spec.names or not isinstance(entry, dict):
            raise StoreCorruptError(f"{where}: fold entry {name!r} is invalid")
        if not 0 < check_int(entry.get("steps"), f"{where} fold steps of {name!r}") <= steps:
            raise StoreCorruptError(f"{where}: fold of {name!r} covers {entry['steps']} steps of {steps}")
        # The path is used to read and delete arrays: accept only the shape this library writes.
        if not re.fullmatch(rf"fold/{re.escape(name)}/g[0-9]+", str(entry.get("path"))):
            raise StoreCorruptError(f"{where}: fold path {entry.get('path')!r} of {name!r} is invalid")
    return {"generation": generation, "steps": steps, "ids": ids, "folded": dict(folded)}
