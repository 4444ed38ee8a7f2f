"""How a store's arrays are chunked and encoded: fixed when the store is created."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.core.group import GroupMetadata  # what zarr.create_hierarchy takes for a group

from responsibility.choices import SIGNS, Codec, JournalDelta, JournalDtype, RDtype, Sign, check_choice

if TYPE_CHECKING:  # the metadata types zarr.create_hierarchy takes for arrays
    from zarr.core.metadata import ArrayV2Metadata, ArrayV3Metadata

FLOAT16_MAX = 65504.0
# bfloat16 has no numpy dtype: its bits are stored as uint16 (attribute "encoding": "bfloat16"); 0xFFFF is a NaN.
BF16_STORAGE = "uint16"
BF16_NAN_BITS = 0xFFFF


@dataclass(frozen=True)
class Layout:
    """Chunking and compression, fixed when a store is created.

    ``chunk_steps`` journal rows form one chunk row: the recorder buffers that many steps and writes whole
    chunks. R chunks are (``r_chunk_examples``, ``r_chunk_units``): a fold writes column blocks over all
    examples, so it writes whole chunks too, and the library reads R in whole columns: taller chunks cost its reads
    no extra bytes and save files (4,096 against 1,024 examples: a fit-end fold 0.71x, a one-weight read 0.71x).
    """

    chunk_steps: int = 32
    journal_chunk_cols: int = 32768
    r_chunk_examples: int = 4096
    r_chunk_units: int = 256
    codec: Codec = "lz4"
    topk: int = 10
    # The signs of R a fold ranks into the top-k index. R_abs is the paper's R and what the library's queries rank
    # by default; R_pos or R_neg queries on a sign without an index read R's columns instead. Each sign indexed
    # costs the fold a ranking of every column and two more arrays per parameter: on 2 cores an index of all three
    # signs added 29% to the defaults' fit-end-sized fold, of R_abs alone 8-10% (docs/benchmarks.md).
    topk_signs: tuple[Sign, ...] = ("abs",)
    # float16 stores the folded R lossily (relative error <= 2^-11, absolute <= 2^-25 below 2^-14) at half the
    # size; the fold still accumulates in float32 from the journal and never resumes from rounded sums.
    r_dtype: RDtype = "float32"
    # bfloat16 journals each step's Δw (or unit sums) rounded to nearest even with 8 significant bits: half the
    # bytes; every journaled value, and so every R_pos/R_neg/R_abs, is off by at most 2^-8 of itself (values below
    # float32's normal range, 1.2e-38, excepted). Folds and reads still sum in float32.
    journal_dtype: JournalDtype = "float32"
    # "derived" (plain SGD; per-example parameters at weight granularity): a step whose Δw is c · Σ_j g_j (to within
    # 2^-20 of the parameter's largest weight) journals c, and each example's share is c · g_j
    # (responsibility.recording.derived).
    journal_delta: JournalDelta = "stored"

    def __post_init__(self) -> None:
        for field in ("chunk_steps", "journal_chunk_cols", "r_chunk_examples", "r_chunk_units"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"{field} must be >= 1")
        if self.topk < 0:
            raise ValueError("topk must be >= 0")
        # A list from JSON or Hydra becomes the canonical tuple, so layouts indexing the same signs are equal.
        object.__setattr__(self, "topk_signs", sign_set("topk_signs", self.topk_signs))
        check_choice("codec", self.codec, Codec)
        check_choice("r_dtype", self.r_dtype, RDtype)
        check_choice("journal_dtype", self.journal_dtype, JournalDtype)
        check_choice("journal_delta", self.journal_delta, JournalDelta)

    def compressors(self, unshuffled: bool = False) -> list[Any]:
        """The codecs of an array; ``unshuffled``: float data that byte shuffling does not pay for (the journal's
        Δw and per-example values, float32 R of a parameter recorded per example)."""
        # A CRC32C per chunk turns bit rot or a torn chunk into a read error instead of wrong numbers.
        if self.codec == "none":
            return [Crc32cCodec()]
        if unshuffled and self.codec == "lz4":
            # lz4 is the fast choice. Byte shuffling would save a fifth of the journal's bytes but makes encoding
            # 3-4x slower; a fit journaling every weight took 6-17% less time without it (docs/scale.md,
            # "Codecs"). Per-example float32 R is smaller without it too (0.45 of raw against 0.49) and encodes
            # 1.45x as fast; uniform R keeps it (2.8-6.8x larger without), as does float16 R (0.43 against 0.36).
            return [BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle"), Crc32cCodec()]
        # Shuffle groups bytes by significance: integers' high bytes are zeros; R is far smaller with it.
        return [BloscCodec(cname=self.codec, clevel=5 if self.codec == "lz4" else 1, shuffle="shuffle"), Crc32cCodec()]

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "topk_signs": list(self.topk_signs)}


def sign_set(name: str, signs: str | Iterable[str]) -> tuple[Sign, ...]:
    """``signs`` (one sign, or several, each once) checked, in the order of :data:`~responsibility.choices.SIGNS`."""
    given = [signs] if isinstance(signs, str) else list(signs)
    for sign in given:
        check_choice(name, sign, Sign)
    if not given or len(set(given)) != len(given):
        raise ValueError(f"{name} must name at least one sign, each once (topk=0 builds no index); got {given}")
    return tuple(s for s in SIGNS if s in given)


def create_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    chunks: tuple[int, ...],
    layout: Layout,
    dims: tuple[str, ...],
    unshuffled: bool = False,
) -> zarr.Array:
    """A chunked, checksummed array; ``dims`` names its dimensions (xarray and other readers use them);
    ``unshuffled``: see :meth:`Layout.compressors`."""
    if len(dims) != len(shape):
        raise ValueError(f"{name}: {len(dims)} dimension names for {len(shape)} dimensions")
    # Fill values are impossible data (R, Δw never NaN; ids, offsets never negative): a lost chunk reads as them.
    fill = np.nan if dtype.startswith("float") else BF16_NAN_BITS if dtype == BF16_STORAGE else -1
    return writable(
        group.create_array(
            name,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            fill_value=fill,
            compressors=layout.compressors(unshuffled),
            dimension_names=dims,
        )
    )


def writable(arr: zarr.Array) -> zarr.Array:
    """``arr`` configured for the store's writes: every chunk written holds data (R, Δw and ids are never their
    fill values), so zarr's check of each chunk against the fill value, a NaN-aware comparison of the whole chunk
    (a fifth of writing a journal chunk), is skipped."""
    return arr.with_config(dataclasses.replace(arr.config, write_empty_chunks=True))


ArraySpec = tuple[tuple[int, ...], str, tuple[int, ...], tuple[str, ...]]  # shape, dtype, chunks, dimension names


def create_arrays(
    group: zarr.Group,
    arrays: dict[str, ArraySpec],
    layout: Layout,
    unshuffled: Collection[str] = (),
    attributes: Mapping[str, dict[str, Any]] | None = None,
    groups: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, zarr.Array]:
    """Several new arrays of :func:`create_array` in ``group`` at once (names may have a path: ``journal/rows``;
    ``unshuffled`` names those of :meth:`Layout.compressors`' unshuffled data; ``attributes`` per name; ``groups``: new
    groups to make with them, by path, with their attributes): their metadata is formed in memory and written
    concurrently by ``zarr.create_hierarchy``. One array at a time costs a few ms of round trips each, and rewrites
    every parent group's metadata (the root's holds the store's whole spec)."""
    template = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    prefix = f"{group.path}/" if group.path else ""
    nodes: dict[str, GroupMetadata | ArrayV2Metadata | ArrayV3Metadata] = {
        prefix + path: GroupMetadata(attributes=attrs) for path, attrs in (groups or {}).items()
    }
    # Arrays alike (a parameter's pos and neg, its top-k ids of every sign) share one metadata object: making each
    # in memory costs about 1 ms, most of a fold's array creation.
    made: dict[tuple[Any, ...], ArrayV2Metadata | ArrayV3Metadata] = {}
    for name, (shape, dtype, chunks, dims) in arrays.items():
        attrs = (attributes or {}).get(name)
        key = (shape, dtype, chunks, dims, name in unshuffled, json.dumps(attrs, sort_keys=True))
        if key not in made:
            one = create_array(
                template, f"a{len(made)}", shape, dtype, chunks, layout, dims, unshuffled=name in unshuffled
            )
            if attrs:
                one.attrs.put(attrs)
            made[key] = one.metadata
        nodes[prefix + name] = made[key]
    created = dict(zarr.create_hierarchy(store=group.store, nodes=nodes))
    out = {}
    for name in arrays:
        arr = created[prefix + name]
        if not isinstance(arr, zarr.Array):  # create_hierarchy makes what it is given: an array
            raise TypeError(f"{name}: expected an array")
        out[name] = writable(arr)
    return out
