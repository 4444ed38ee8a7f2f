"""A store at an s3:// URL records, folds and answers queries like a local one (moto's S3 server on loopback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import IndexedData, TinyNet, make_trainer
from torch.utils.data import DataLoader

from responsibility import RecordingSpec, ResponsibilityCallback, ResponsibilityStore, StoreExistsError
from responsibility.store.spec import ParamSpec

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

N = 48
BUCKET = "responsibility-test"


@pytest.fixture(scope="module")
def s3():
    """An S3-compatible server on 127.0.0.1 with one bucket; yields the s3fs ``storage_options``."""
    with pytest.MonkeyPatch.context() as mp:
        for var, value in (
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ):
            mp.setenv(var, value)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            endpoint = f"http://127.0.0.1:{server._server.server_port}"
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            yield {
                "endpoint_url": endpoint,
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"region_name": "us-east-1"},
                "client": client,
            }
        finally:
            server.stop()


def _options(s3) -> dict:
    return {k: v for k, v in s3.items() if k != "client"}


def _keys(s3, prefix: str) -> list[str]:
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _fit(tmp_path, store, **kw) -> None:
    # Same seed, same data order, same model init: two fits write identical journals. Every S3 request costs
    # ~10 ms on the test server, so only the output layer is tracked; the buffer holds chunk rows of 4 steps (84 B
    # per step), so an epoch's 6 steps make two rows of 3.
    cb = ResponsibilityCallback(
        store, layers="net.2", attribution="uniform", journal_buffer_mb=4 * 2 * 84 / 2**20, **kw
    )
    loader = DataLoader(IndexedData(N), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1))
    make_trainer(tmp_path, [cb], max_epochs=2).fit(TinyNet(), loader)


def _assert_same(a: ResponsibilityStore, b: ResponsibilityStore) -> None:
    assert a.steps == b.steps == 12 and a.num_ids == b.num_ids and a.layout.chunk_steps == 3
    assert a.parameters == b.parameters == ["net.2.weight", "net.2.bias"]
    np.testing.assert_array_equal(a.journal_rows(0, a.steps)[0], b.journal_rows(0, b.steps)[0])
    for x, y in zip(a.membership(), b.membership(), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.labels, b.labels)
    for name in a.parameters:
        for sign in ("abs", "pos", "neg"):
            np.testing.assert_array_equal(a.read(name, sign), b.read(name, sign))
        for k in (3, 12):  # from the top-k index, and computed from R
            for x, y in zip(a.most_responsible(name, k), b.most_responsible(name, k), strict=True):
                np.testing.assert_array_equal(x, y)


def test_record_fold_and_query_on_s3(tmp_path, s3):
    url = f"s3://{BUCKET}/run1/r.zarr"
    _fit(tmp_path, url, storage_options=_options(s3))
    _fit(tmp_path, tmp_path / "local.zarr")
    keys = _keys(s3, "run1/r.zarr/")
    assert "run1/r.zarr/zarr.json" in keys and any(k.startswith("run1/r.zarr/journal/rows/c/") for k in keys)
    assert ResponsibilityStore.exists(url, storage_options=_options(s3))
    remote = ResponsibilityStore.open(url, storage_options=_options(s3))
    local = ResponsibilityStore.open(tmp_path / "local.zarr")
    assert all(remote.folded_steps(n) == remote.steps for n in remote.parameters)  # fold="auto" at fit end
    _assert_same(remote, local)

    # A fresh run into the recorded S3 store is refused, then replaces it with overwrite=True (R read lazily).
    with pytest.raises(StoreExistsError):
        _fit(tmp_path, url, storage_options=_options(s3))
    _fit(tmp_path, url, storage_options=_options(s3), overwrite=True, fold="never")
    replaced = ResponsibilityStore.open(url, storage_options=_options(s3))
    assert replaced.folded_steps("net.2.weight") == 0
    assert not [k for k in _keys(s3, "run1/r.zarr/fold/") if "/c/" in k]  # the old fold's chunks are gone
    _assert_same(replaced, local)


def test_fold_and_dask_on_s3(tmp_path, s3):
    dask = pytest.importorskip("dask")
    from responsibility.analysis import offline

    url = f"s3://{BUCKET}/run2/r.zarr"
    _fit(tmp_path, url, storage_options=_options(s3), fold="never")
    _fit(tmp_path, tmp_path / "local.zarr", fold="never")
    remote = ResponsibilityStore.open(url, "r+", storage_options=_options(s3))
    local = ResponsibilityStore.open(tmp_path / "local.zarr", "r+")
    assert remote.folded_steps("net.2.weight") == 0
    np.testing.assert_array_equal(remote.read("net.2.weight"), local.read("net.2.weight"))  # lazy, before a fold
    remote.fold(budget_bytes=10 * 800)  # two column blocks of net.2.weight: two rounds of S3 chunk writes
    local.fold()
    assert any(k.startswith("run2/r.zarr/fold/net.2.weight/g") for k in _keys(s3, "run2/r.zarr/fold/"))
    _assert_same(ResponsibilityStore.open(url, storage_options=_options(s3)), local)
    with dask.config.set(scheduler="threads"):
        for name in remote.parameters:
            got = dask.compute(*offline.topk(remote, name, 5), offline.group_sums(remote, name))
            want = dask.compute(*offline.topk(local, name, 5), offline.group_sums(local, name))
            for x, y in zip(got, want, strict=True):
                np.testing.assert_array_equal(x, y)


def test_open_missing_url_is_a_clear_error(s3):
    url = f"s3://{BUCKET}/nothing/here.zarr"
    assert not ResponsibilityStore.exists(url, storage_options=_options(s3))
    with pytest.raises(FileNotFoundError, match="no responsibility store"):
        ResponsibilityStore.open(url, storage_options=_options(s3))


def test_overwrite_does_not_delete_foreign_objects_on_s3(s3):
    s3["client"].put_object(Bucket=BUCKET, Key="data/notes.txt", Body=b"precious")
    spec = RecordingSpec((ParamSpec("w", (2, 2)),), num_examples=4)
    with pytest.raises(StoreExistsError, match="not a responsibility store"):
        ResponsibilityStore.create(f"s3://{BUCKET}/data", spec, overwrite=True, storage_options=_options(s3))
    assert "data/notes.txt" in _keys(s3, "data/")
