"""Storages from legacy torch.save bytes, viewed in place: same values as torch's own loader,
clear errors for anything else."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from dragwalk.models.storage_bytes import StorageBytesError, storage_from_bytes


def _legacy_bytes(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TypedStorage is deprecated, but it is what pickles hold
        warnings.simplefilter("ignore", UserWarning)
        torch.save(t.storage(), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.int64])
def test_matches_torch_load(dtype):
    t = (torch.randn(37) * 100).to(dtype)
    data = _legacy_bytes(t)
    ours = storage_from_bytes(data)
    theirs = torch.load(io.BytesIO(data), weights_only=True)
    assert ours.dtype == theirs.dtype == dtype
    assert torch.equal(torch.tensor([], dtype=dtype).set_(ours), torch.tensor([], dtype=dtype).set_(theirs))


def test_refuses_other_bytes():
    data = _legacy_bytes(torch.randn(8))
    with pytest.raises(StorageBytesError, match="truncated|announced|corrupt"):
        storage_from_bytes(data[:-4])
    with pytest.raises(StorageBytesError, match="corrupt|magic"):
        storage_from_bytes(b"\x80\x02K\x01.")
    with pytest.raises(StorageBytesError, match="reference builtins.eval"):
        storage_from_bytes(b"\x80\x02cbuiltins\neval\nq\x00.")
    with pytest.raises(StorageBytesError, match="announced"):
        storage_from_bytes(data + b"\x00" * 4)
