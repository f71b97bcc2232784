"""The default model behind the generator interface: real weights, real faces."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from dragwalk.faces import face_analyzer
from dragwalk.imaging import to_uint8
from dragwalk.models import Latent, ModelError, load_model, save_model
from dragwalk.models.dcgan import DCGANGenerator


def test_default_model_describes_itself(generator):
    info = generator.describe()
    assert info["resolution"] == 64
    assert info["latent_spaces"] == ["z"]
    assert info["latent_dim"] == 100
    assert [l["size"] for l in info["layers"]] == [4, 8, 16, 32, 64]


def test_same_seed_same_face_different_seed_different_face(generator):
    a = generator.render(generator.sample(7))
    b = generator.render(generator.sample(7))
    c = generator.render(generator.sample(8))
    assert a.shape == (1, 3, 64, 64)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.1
    assert a.min() >= -1 and a.max() <= 1


def test_seeds_give_faces_dlib_can_find(generator):
    """Real weights make real faces: dlib's detector finds most of them."""
    analyzer = face_analyzer()
    found = sum(analyzer.detect(to_uint8(generator.render(generator.sample(s)))) is not None
                for s in range(12))
    assert found >= 6, f"only {found}/12 generated images contain a detectable face"


def test_random_weights_do_not_make_faces():
    """The face check above can fail: an untrained DCGAN of the same shape yields no faces."""
    torch.manual_seed(0)
    untrained = DCGANGenerator().eval()
    analyzer = face_analyzer()
    found = sum(analyzer.detect(to_uint8(untrained.render(untrained.sample(s)))) is not None
                for s in range(6))
    assert found == 0


def test_truncation_scales_z(generator):
    z1 = generator.sample(3).code
    z07 = generator.sample(3, truncation=0.7).code
    assert torch.allclose(z07, 0.7 * z1)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("block", [1, 2])
def test_a_transposed_convolution_as_a_matrix_product_is_torchs_convolution(generator, block, batch):
    """The small-input blocks run as a matrix product and a fold (one sample, or a batch's
    samples side by side as columns); forward and input gradient must be PyTorch's own
    ``conv_transpose2d`` (an independent implementation) to float rounding."""
    import torch.nn.functional as F

    from dragwalk.models.dcgan import transposed_as_matmul

    weight = generator.blocks[block].conv.weight
    side = 4 * 2 ** (block - 1)
    x = torch.randn(batch, weight.shape[0], side, side, generator=torch.Generator().manual_seed(block)).relu()
    grad = torch.randn(batch, weight.shape[1], 2 * side, 2 * side, generator=torch.Generator().manual_seed(9))
    outs = []
    for fn in (transposed_as_matmul, lambda v, w, s, p: F.conv_transpose2d(v, w, stride=s, padding=p)):
        v = x.clone().requires_grad_(True)
        out = fn(v, weight, 2, 1)
        (out * grad).sum().backward()
        outs.append((out.detach(), v.grad))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-5)


def test_a_frame_in_inference_mode_leaves_the_weight_forms_usable_by_a_drag(generator):
    """The matrix-product blocks keep a copy of their weight in patch layout, made on first use. A
    first image rendered under ``torch.inference_mode`` (a caller of the Python API may) must not
    make that copy an inference tensor, which a drag's autograd could not save."""
    import copy

    from dragwalk.drag import DragConfig, DragRun

    fresh = copy.deepcopy(generator)             # new weight tensors: nothing derived from them yet
    with torch.inference_mode():
        fresh.render(fresh.sample(0))
    run = DragRun(fresh, fresh.sample(0), [[20.0, 20.0]], [[24.0, 25.0]], config=DragConfig(method="draggan"))
    for _ in range(2):
        run.step(render=True)
    assert run.step_count == 2


def test_stop_at_feature_skips_later_blocks(generator):
    calls: list[int] = []
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, b in enumerate(generator.blocks)]
    try:
        out = generator.synthesize(generator.sample(1), feature_layer="b1", stop_at_feature=True)
    finally:
        for h in hooks:
            h.remove()
    assert out.image is None
    assert out.features.shape == (1, 256, 8, 8)
    assert calls == [0, 1]


def test_full_forward_returns_features_and_image(generator):
    latent = generator.sample(1)
    out = generator.synthesize(latent, feature_layer="b3")
    assert out.features.shape == (1, 64, 32, 32)
    assert torch.equal(out.image, generator.render(latent))


def test_unknown_layer_and_space_are_clear_errors(generator):
    with pytest.raises(ValueError, match="no layer named 'b9'"):
        generator.synthesize(generator.sample(1), feature_layer="b9")
    with pytest.raises(ValueError, match="only a 'z' latent space"):
        generator.sample(1, space="w")


@pytest.mark.parametrize("mode", ["z", "z+b1"])
def test_drag_variables_carry_gradients_to_the_latent_only(generator, mode):
    latent = generator.sample(2)
    variables = generator.drag_variables(latent, mode)
    out = generator.synthesize(variables.latent(), feature_layer="b3", stop_at_feature=True)
    out.features.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in variables.params)
    assert all(p.grad is None for p in generator.parameters())
    assert len(variables.params) == (1 if mode == "z" else 2)
    # the untouched variables reproduce the original image exactly
    with torch.no_grad():
        assert torch.allclose(generator.render(variables.latent()), generator.render(latent), atol=1e-6)


def test_offsets_change_the_image(generator):
    latent = generator.sample(4)
    offset = torch.zeros(1, 256, 8, 8)
    offset[:, :, 2:4, 2:4] = 1.0
    moved = generator.render(Latent("z", latent.code, {"b1": offset}))
    diff = (moved - generator.render(latent)).abs().sum(1)[0]
    # the change concentrates where the offset was put (rows/cols 16..32 at 64 px)
    assert diff[12:36, 12:36].sum() > 0.6 * diff.sum()


def test_first_linear_map_is_the_first_conv(generator):
    a = generator.first_linear_map()
    assert a.shape == (100, 512 * 16)


def test_own_format_roundtrip(generator, tmp_path):
    path = save_model(generator, tmp_path / "faces.safetensors")
    assert path.with_suffix(".json").is_file()
    again = load_model(str(path), "cpu")
    latent = generator.sample(11)
    assert torch.equal(again.render(latent), generator.render(latent))


def test_bad_model_references_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        load_model("nope")
    with pytest.raises(ModelError, match="no model file"):
        load_model(str(tmp_path / "missing.pkl"))
    weights = tmp_path / "lonely.safetensors"
    weights.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="JSON config"):
        load_model(str(weights))
    text = tmp_path / "model.txt"
    text.write_text("hi")
    with pytest.raises(ModelError, match="unknown model file type"):
        load_model(str(text))


def test_a_relative_and_an_absolute_path_are_one_model(tmp_path, monkeypatch):
    path = save_model(DCGANGenerator(nz=8, ngf=4, resolution=16, name="tiny"), tmp_path / "tiny.safetensors")
    monkeypatch.chdir(tmp_path)
    absolute = load_model(str(path))
    assert load_model("./tiny.safetensors") is absolute
    assert load_model(str(tmp_path / "sub" / ".." / "tiny.safetensors")) is absolute
    # the same path with new contents (a file replaced in place) is a different model
    time.sleep(0.01)
    save_model(DCGANGenerator(nz=8, ngf=4, resolution=16, name="tiny"), path)
    assert load_model(str(path)) is not absolute


def test_a_slow_load_does_not_block_other_models(tmp_path, monkeypatch):
    from dragwalk.models import registry

    slow = save_model(DCGANGenerator(nz=8, ngf=4, resolution=16, name="slow"), tmp_path / "slow.safetensors")
    fast = save_model(DCGANGenerator(nz=8, ngf=4, resolution=16, name="fast"), tmp_path / "fast.safetensors")
    release, entered = threading.Event(), threading.Event()
    real = registry._load_own_format

    def held(path):
        if path.name == "slow.safetensors":
            entered.set()
            assert release.wait(30)
        return real(path)

    monkeypatch.setattr(registry, "_load_own_format", held)
    loader = threading.Thread(target=load_model, args=(str(slow),), daemon=True)
    loader.start()
    assert entered.wait(30)
    done: list = []
    other = threading.Thread(target=lambda: done.append(load_model(str(fast))), daemon=True)
    other.start()
    other.join(10)
    try:
        assert done and done[0].name == "fast", "loading one model waited for another model's load"
    finally:
        release.set()
        loader.join(30)


def test_first_block_as_a_matrix_product_equals_the_transposed_convolution(generator):
    """The first block runs its 1x1 -> 4x4 transposed convolution as one matrix product (3x faster
    on CPU, where GANSpace and SFVQ run it over 10k samples several times): same numbers and
    gradients as torch's own transposed convolution."""
    from dragwalk.models.dcgan import MATMUL_BATCH, UpBlock

    first = next(m for m in generator.modules() if isinstance(m, UpBlock))
    z = torch.randn(MATMUL_BATCH + 3, 100, 1, 1, generator=torch.Generator().manual_seed(1), requires_grad=True)
    ours = first(z)
    with torch.no_grad():
        theirs = torch.relu(first.norm(first.conv(z)))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    ours.square().sum().backward()
    reference = z.detach().clone().requires_grad_(True)
    torch.relu(first.norm(first.conv(reference))).square().sum().backward()
    torch.testing.assert_close(z.grad, reference.grad, atol=1e-4, rtol=1e-4)
