import pytest
import torch

from dragwalk.device import pick_device, pick_dtype


def test_auto_prefers_cuda_then_mps_then_cpu():
    device = pick_device("auto")
    if torch.cuda.is_available():
        assert device.type == "cuda"
    elif torch.backends.mps.is_available():
        assert device.type == "mps"
    else:
        assert device.type == "cpu"


def test_explicit_and_bad_devices():
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_half_only_on_gpu():
    assert pick_dtype(torch.device("cpu"), half=True) == torch.float32
    assert pick_dtype(torch.device("cuda"), half=True) == torch.float16
    assert pick_dtype(torch.device("cuda")) == torch.float32
