"""R-sized zeroed buffers (``responsibility.store._memory``): zeros like ``torch.zeros``, and, where the kernel
offers transparent huge pages, in a mapping advised for them."""

from __future__ import annotations

import gc
import mmap
from pathlib import Path

import numpy as np
import pytest
import torch

from responsibility.store import _memory


def smaps_entry(address: int) -> dict[str, str]:
    """This process's ``/proc/self/smaps`` fields of the mapping holding ``address``."""
    entry: dict[str, str] | None = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            if entry is not None:
                return entry
            lo, hi = (int(x, 16) for x in head.split("-"))
            entry = {} if lo <= address < hi else None
        elif entry is not None and ":" in line:
            key, value = line.split(":", 1)
            entry[key] = value.strip()
    if entry is None:
        raise LookupError(f"no mapping holds {address:#x}")
    return entry


@pytest.mark.parametrize("shape", [(3, 5), (4096, 1024), (1000, 3001), (0, 7)])
def test_zeros_are_zero_float32_tensors_that_take_writes(shape):
    t = _memory.zeros(*shape)
    assert t.dtype == torch.float32 and t.shape == shape and t.is_contiguous() and t.device.type == "cpu"
    assert torch.equal(t, torch.zeros(shape))
    t.add_(torch.arange(t.numel(), dtype=torch.float32).view(shape))
    assert torch.equal(t.view(-1), torch.arange(t.numel(), dtype=torch.float32))
    assert t.numpy().sum(dtype=np.float64) == t.numel() * (t.numel() - 1) / 2  # numpy views the same memory


@pytest.mark.skipif(not _memory.huge_pages_available(), reason="the kernel offers no transparent huge pages here")
def test_large_buffers_are_mapped_for_huge_pages_and_unmapped_with_the_tensor():
    t = _memory.zeros(4096, 1024)  # 16 MiB
    t.fill_(1.0)
    address = t.data_ptr()
    assert smaps_entry(address)["THPeligible"] == "1"
    if "[madvise]" in _memory._THP_SETTING.read_text():  # only advised memory gets huge pages
        # A fresh mapping without the advice (not torch.zeros: malloc may hand out heap that numpy advised).
        plain = mmap.mmap(-1, 16 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        view = torch.frombuffer(plain, dtype=torch.float32)
        assert smaps_entry(view.data_ptr())["THPeligible"] == "0"
        del view
    del t
    gc.collect()
    try:
        after = smaps_entry(address)
    except LookupError:
        return
    assert after.get("THPeligible") != "1"  # the address may be mapped again, but not by a buffer kept alive


@pytest.mark.parametrize(
    "setting, available",
    [("always [madvise] never", True), ("[always] madvise never", True), ("always madvise [never]", False)],
)
def test_huge_pages_are_used_as_the_kernel_setting_says(tmp_path, monkeypatch, setting, available):
    path = tmp_path / "enabled"
    path.write_text(setting + "\n")
    monkeypatch.setattr(_memory, "_THP_SETTING", path)
    _memory.huge_pages_available.cache_clear()
    try:
        assert _memory.huge_pages_available() == available
        monkeypatch.setattr(_memory, "_THP_SETTING", tmp_path / "missing")
        _memory.huge_pages_available.cache_clear()
        assert not _memory.huge_pages_available()
    finally:
        _memory.huge_pages_available.cache_clear()
