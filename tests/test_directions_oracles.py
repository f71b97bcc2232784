"""Every direction method against an independent computation (numpy, scipy, scikit-image).

The method's answer is never compared with itself: each test recomputes what the method
should give with another library (numpy's eig and svd, scipy's generalised eigensolver and
k-means, a reverse-mode Jacobian instead of the method's forward-mode one), or measures the
property the method claims (more variation than random directions, an attribute that moves
the right way on samples the method never saw).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.cluster.vq import kmeans2, vq

from dragwalk.directions import Walk, apply_walks, compute_directions
from dragwalk.models import Latent
from dragwalk.models.dcgan import DCGANGenerator


def signed(v: np.ndarray) -> np.ndarray:
    """The documented sign convention, rows: largest-magnitude component positive."""
    v = np.atleast_2d(v)
    return v * np.sign(v[np.arange(len(v)), np.abs(v).argmax(axis=1)])[:, None]


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# --------------------------------------------------------------------- SeFa
def test_sefa_is_the_eigenbasis_of_the_first_map_in_order_and_sign(generator):
    weight = generator.first_linear_map().detach().double().numpy()          # [D, out]
    a = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(a @ a.T)                                  # numpy's general solver
    values, vectors = values.real, vectors.real
    order = np.argsort(-values)
    values, vectors = values[order], signed(vectors[:, order].T)
    num = 10
    assert np.all(np.diff(values[:num + 1]) < -1e-3 * values[0]), "top eigenvalues must be distinct to compare"
    ds = compute_directions(generator, "sefa", num=num)
    np.testing.assert_allclose(ds.values, values[:num], rtol=1e-4)
    np.testing.assert_allclose(ds.vectors.numpy(), vectors[:num], atol=1e-4)


# --------------------------------------------------------------------- GANSpace
def test_ganspace_matches_numpy_svd_of_the_same_samples(generator):
    # 600 samples: three chunks of the streamed PCA, top components well apart; numpy's SVD of the
    # 600 x 8192 rows takes a quarter of the 1500's time (its cost grows with the square of the rows)
    samples, num = 600, 4
    ds = compute_directions(generator, "ganspace", num=num, samples=samples, seed=3)
    layer = ds.params["layer"]
    codes = generator.sample_codes(samples, seed=3, space="z").code.double()
    with torch.no_grad():
        acts = generator.synthesize(Latent("z", codes.float()), feature_layer=layer, stop_at_feature=True)
    x = acts.features.reshape(samples, -1).double().numpy()
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:num] * np.sign(vt[:num].sum(1, keepdims=True))                # documented: sum positive
    coords = centred @ comps.T
    design = np.hstack([coords, np.ones((samples, 1))])
    regression = np.linalg.lstsq(design, codes.numpy(), rcond=None)[0][:num]  # z ~ coords @ B
    std = s[:num] / np.sqrt(samples - 1)
    top = 3  # the remaining components are compared as a subspace (test_streamed_pca_...)
    assert np.all(cosines(ds.vectors[:top], regression[:top]) > 0.999), cosines(ds.vectors[:top], regression[:top])
    np.testing.assert_allclose(ds.values[:top], std[:top] ** 2, rtol=1e-3)
    np.testing.assert_allclose(ds.scales[:top].numpy(), np.linalg.norm(regression[:top], axis=1) * std[:top],
                               rtol=2e-3)


def _principal_angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles between the row spaces of two orthonormal row stacks (degrees)."""
    return np.degrees(np.arccos(np.clip(np.linalg.svd(a @ b.T, compute_uv=False), -1, 1)))


@pytest.mark.parametrize("dense_limit", [64, 4096])     # block Krylov over streamed chunks / dense eigh
def test_streamed_pca_is_numpy_svd_of_the_same_rows(dense_limit):
    """The chunked PCA GANSpace and SFVQ use (issue 13: memory bounded whatever the sample count)
    against numpy's SVD of all rows at once: same top-k subspace, variances and coordinates."""
    from dragwalk.directions.pca import streamed_pca

    rng = np.random.default_rng(5)
    n, f, k = 1200, 300, 20                            # a decaying spectrum plus noise, a shifted mean
    data = (rng.standard_normal((n, 60)) * np.linspace(3, 0.2, 60)) @ rng.standard_normal((60, f))
    data = np.maximum(data + 0.3 * rng.standard_normal((n, f)) + 5.0, 0)    # ReLU-like, as activations
    rows = torch.from_numpy(data).float()
    reads = []

    def source():
        reads.append(1)
        return rows.split(100)                           # never the whole matrix in one piece

    got = streamed_pca(source, k, seed=1, dense_limit=dense_limit)
    centred = data - data.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    assert s[k - 1] / s[k] > 1.001                       # the top-k subspace is well defined
    comps = got.components.double().numpy()
    assert _principal_angles_deg(comps, vt[:k]).max() < 0.05
    np.testing.assert_allclose(np.abs((comps * vt[:k]).sum(1))[:10], 1, atol=1e-6)
    np.testing.assert_allclose(got.std.numpy(), s[:k] / np.sqrt(n - 1), rtol=1e-4)
    np.testing.assert_allclose(got.mean.numpy(), data.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got.coords.numpy(), centred @ comps.T, atol=2e-3 * s[0] / np.sqrt(n))
    assert np.all(comps.sum(1) > 0)                       # the documented sign convention
    assert len(reads) == got.passes + 1                 # one read to see F, then each pass


def test_ganspace_in_w_is_numpy_pca_of_sampled_w():
    from dragwalk.models import stylegan2

    torch.manual_seed(0)
    sg = stylegan2.StyleGAN2Generator(z_dim=16, w_dim=16, img_resolution=16, mapping_kwargs={"num_layers": 2},
                                      synthesis_kwargs={"channel_base": 512, "channel_max": 16},
                                      name="tiny").eval().requires_grad_(False)
    ds = compute_directions(sg, "ganspace", num=5, samples=3000, seed=1)
    w = sg.sample_codes(3000, seed=1, space="w").code
    w = (w[:, 0] if w.dim() == 3 else w).double().numpy()
    _, s, vt = np.linalg.svd(w - w.mean(0), full_matrices=False)
    comps = vt[:5] * np.sign(vt[:5].sum(1, keepdims=True))
    assert np.all(np.diff(s[:6]) < -1e-3 * s[0])
    np.testing.assert_allclose(ds.vectors.numpy(), comps, atol=1e-4)
    np.testing.assert_allclose(ds.scales.numpy(), s[:5] / np.sqrt(3000 - 1), rtol=1e-4)


# --------------------------------------------------------------------- REDs
@pytest.fixture(scope="module")
def tiny():
    """A DCGAN small enough for a dense Jacobian: z in R^8, 16 x 16 px, random weights."""
    torch.manual_seed(7)
    return DCGANGenerator(nz=8, ngf=4, resolution=16, name="tiny-dcgan").eval().requires_grad_(False)


def test_reds_solve_the_dense_generalised_eigenproblem(tiny):
    region = np.zeros((16, 16), np.float32)
    region[3:9, 5:12] = 1
    latent = tiny.sample(3)
    ds = compute_directions(tiny, "reds", latent=latent, mask=region, num=3, offsets="none")   # the global latent
    # the Jacobian again, by reverse mode (the method uses forward mode), in float64 for the solve
    jac = torch.autograd.functional.jacobian(lambda z: tiny.render(Latent("z", z[None]))[0], latent.code[0])
    j = jac.reshape(-1, 8).double().numpy()                                     # [3*H*W, D]
    w = np.tile(region.reshape(-1), 3).astype(np.float64)
    a_c = j.T @ (j * w[:, None])
    a_f = j.T @ (j * (1 - w)[:, None])
    a_c, a_f = a_c / np.linalg.norm(a_c), a_f / np.linalg.norm(a_f)
    values, vectors = scipy.linalg.eigh(a_c, a_f)                              # ascending
    values, vectors = values[::-1], signed((vectors[:, ::-1] / np.linalg.norm(vectors[:, ::-1], axis=0)).T)
    assert np.all(np.diff(values[:4]) < -1e-3 * values[0]), "top quotients must be distinct to compare"
    np.testing.assert_allclose(ds.values, values[:3], rtol=1e-3)
    np.testing.assert_allclose(ds.vectors.numpy(), vectors[:3], atol=2e-3)


# --------------------------------------------------------------------- DP-LaSE
def _variation(generator, vectors: torch.Tensor, layer: str, step: float = 3.0) -> float:
    """Mean squared change of ``layer`` per feature when each unit row moves 64 held-out z by
    ``step`` on their density shell (the endpoint written out here, not taken from the package)."""
    z0 = torch.from_numpy(np.random.default_rng(2024).standard_normal((64, vectors.shape[1]))).float()
    with torch.no_grad():
        base = generator.synthesize(Latent("z", z0), feature_layer=layer, stop_at_feature=True).features
        total = 0.0
        for v in vectors:
            moved = z0 + step * v
            moved = moved * (z0.norm(dim=1, keepdim=True) / moved.norm(dim=1, keepdim=True))
            after = generator.synthesize(Latent("z", moved), feature_layer=layer, stop_at_feature=True).features
            total += float((after - base).pow(2).mean())
    return total / len(vectors)


def test_dplase_learns_more_variation_than_random_and_more_with_training(generator):
    k, layer = 4, "b0"
    trained = {iters: compute_directions(generator, "dplase", k=k, layer=layer, iters=iters, refine=False,
                                         time_limit=None) for iters in (1, 30, 90)}
    var = {iters: _variation(generator, ds.vectors, layer) for iters, ds in trained.items()}
    rng = np.random.default_rng(5)
    random = np.mean([_variation(generator, torch.from_numpy(np.linalg.qr(rng.standard_normal((100, k)))[0].T)
                                 .float(), layer) for _ in range(3)])
    assert var[1] < var[30] < var[90], var
    assert var[90] > 1.3 * random, (var, random)


def _papers_dplase_objective(deltas: np.ndarray, gamma: np.ndarray) -> float:
    """-a sum_j |D_j|^2 + b sum_{j != h} (D_j . D_h)^2 averaged over the samples of ``deltas
    [B, k, F]``, + c |G G^T - I|^2: numpy loops over the pairs."""
    from dragwalk.directions.dplase import WEIGHTS

    a, b, c = WEIGHTS
    k = deltas.shape[1]
    total = 0.0
    for d in deltas:
        variation = sum(float(d[j] @ d[j]) for j in range(k))
        correlation = sum(float(d[j] @ d[h]) ** 2 for j in range(k) for h in range(k) if j != h)
        total += -a * variation + b * correlation
    return total / deltas.shape[0] + c * float(((gamma @ gamma.T - np.eye(k)) ** 2).sum())


def test_dplase_loss_is_the_papers_objective_written_in_numpy():
    """The code's one Gram matrix per sample (and its one-product backward) against the objective
    written with numpy loops, and its gradient against numpy's central differences."""
    from dragwalk.directions.dplase import dplase_loss

    rng = np.random.default_rng(4)
    deltas, gamma = rng.normal(size=(3, 5, 11)) * 0.3, rng.normal(size=(5, 7))
    d = torch.from_numpy(deltas).requires_grad_(True)
    got = dplase_loss(d, torch.from_numpy(gamma))
    assert float(got.detach()) == pytest.approx(_papers_dplase_objective(deltas, gamma), rel=1e-9)
    got.backward()
    # the gradient does not depend on gamma; orthonormal rows keep the differences' rounding small
    rows = np.linalg.qr(rng.normal(size=(7, 5)))[0].T
    h, numeric = 1e-6, np.zeros_like(deltas)
    for index in np.ndindex(deltas.shape):
        up, down = deltas.copy(), deltas.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (_papers_dplase_objective(up, rows) - _papers_dplase_objective(down, rows)) / (2 * h)
    np.testing.assert_allclose(d.grad.numpy(), numeric, rtol=1e-5, atol=1e-6)


def test_dplase_changes_pair_each_sample_with_its_own_endpoints():
    """``D[b, j] = (G1(z0_b) - G1(z_dp)) / sqrt(F)`` with ``z_dp`` the end of ``z0_b + eps_jb g_j`` on
    ``z0_b``'s shell, written with numpy loops, for a small nonlinear ``G1``."""
    from dragwalk.directions.dplase import endpoint_changes

    rng = np.random.default_rng(5)
    lift = rng.normal(size=(6, 9))
    z0, gamma, eps = rng.normal(size=(4, 6)), rng.normal(size=(3, 6)), rng.normal(size=(3, 4, 1))

    def g1(z):
        return torch.tanh(z @ torch.from_numpy(lift))

    got = endpoint_changes(g1, torch.from_numpy(z0), torch.from_numpy(eps), torch.from_numpy(gamma)).numpy()
    assert got.shape == (4, 3, 9)
    for b in range(4):
        for j in range(3):
            moved = z0[b] + eps[j, b, 0] * gamma[j]
            moved = moved * np.linalg.norm(z0[b]) / np.linalg.norm(moved)
            expected = (np.tanh(z0[b] @ lift) - np.tanh(moved @ lift)) / np.sqrt(9)
            np.testing.assert_allclose(got[b, j], expected, rtol=1e-10, atol=1e-12)
    base = g1(torch.from_numpy(z0))
    np.testing.assert_allclose(endpoint_changes(g1, torch.from_numpy(z0), torch.from_numpy(eps),
                                                torch.from_numpy(gamma), base).numpy(), got, rtol=1e-12)


def test_dplase_stop_rule_waits_for_the_objective_to_flatten():
    from dragwalk.directions.dplase import WINDOW, CHECK, converged

    w = WINDOW // CHECK
    improving = [-10.0 * (1 - 0.9 ** i) for i in range(1, 40)]      # still gains ~4% per window at the end
    flat = improving[:10] + [improving[9] - 0.001 * i for i in range(1, 10)]
    assert not any(converged(improving[:n], 0.02) for n in range(1, 25))
    assert [n for n in range(1, len(flat) + 1) if converged(flat[:n], 0.02)][0] == 10 + w
    assert not converged(flat, 0.0)                                 # tol 0: never stops early


def _principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    qa, qb = np.linalg.qr(np.asarray(a, np.float64).T)[0], np.linalg.qr(np.asarray(b, np.float64).T)[0]
    return np.degrees(np.arccos(np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1, 1)))


def test_dplase_stops_on_convergence_near_where_a_longer_run_ends():
    """A cheap smooth G1 (8-d z, a dominant direction): the run stops on its own, long before its cap,
    and a run twice as long moves its direction by less than 10 degrees (4x as long: 7.7 and 4.3
    degrees for seeds 0 and 1; the default model's figures are in dplase.py)."""
    from dragwalk.directions.dplase import train_gamma

    gen = torch.Generator().manual_seed(0)
    a = 0.1 * torch.randn(8, 32, generator=gen)
    a[0] += 9.0 * torch.randn(32, generator=gen) / 32 ** 0.5
    a[1] += 6.0 * torch.randn(32, generator=gen) / 32 ** 0.5

    def g1(z):
        return torch.tanh(z @ a)

    stopped, _, done, why = train_gamma(g1, 8, k=1, iters=3000, tol=0.02, seed=0)
    assert why == "converged" and done <= 1000, (why, done)
    longer, _, more, why_long = train_gamma(g1, 8, k=1, iters=2 * done, tol=0.0, seed=0)
    assert why_long == "iterations" and more == 2 * done
    assert _principal_angles(stopped, longer).max() < 10.0, _principal_angles(stopped, longer)


# --------------------------------------------------------------------- SFVQ
def _curve_error(points: np.ndarray, codebook: np.ndarray) -> float:
    """Mean squared distance of each point to the piecewise-linear curve through ``codebook``."""
    a, b = codebook[:-1], codebook[1:]
    ab = b - a
    t = np.clip(((points[:, None] - a[None]) * ab[None]).sum(-1) / (ab ** 2).sum(-1)[None], 0, 1)
    proj = a[None] + t[..., None] * ab[None]
    return float(((points[:, None] - proj) ** 2).sum(-1).min(1).mean())


def test_sfvq_quantises_held_out_data_better_than_kmeans_with_as_many_points(generator):
    """32 points (the default ``bits``) fitted to 2000 samples over 10 epochs a level (as many Adam
    steps as the default 10k samples x 2 epochs, at a fifth of the PCA's cost): the curve's error on
    held-out samples beats k-means fitted to as many samples (measured: 0.96-0.97 of k-means' error
    for the method's seeds 0-2, 0.98 at the defaults; 2000 x 2 epochs, too little training: 1.11)."""
    samples = 2000
    ds = compute_directions(generator, "sfvq", samples=samples, epochs=10)
    assert len(ds.extras["codebook"]) == 32
    codebook = ds.extras["codebook"].double().numpy()
    mean, comps = ds.extras["pca_mean"].double().numpy(), ds.extras["pca_components"].double().numpy()
    layer = ds.params["layer"]

    def coords(seed: int, n: int) -> np.ndarray:
        z = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 100))).float()
        with torch.no_grad():
            f = generator.synthesize(Latent("z", z), feature_layer=layer, stop_at_feature=True).features
        return (f.reshape(n, -1).double().numpy() - mean) @ comps.T

    train, held = coords(11, samples), coords(12, 2000)
    best = min((kmeans2(train, len(codebook), seed=s, minit="++", iter=30) for s in range(3)),
               key=lambda r: ((train - r[0][r[1]]) ** 2).sum(1).mean())
    labels, _ = vq(held, best[0])
    kmeans_error = float(((held - best[0][labels]) ** 2).sum(1).mean())
    sfvq_error = _curve_error(held, codebook)
    assert sfvq_error < kmeans_error, (sfvq_error, kmeans_error)


# --------------------------------------------------------------------- InterFaceGAN, LSD
@pytest.mark.parametrize("method", ["interfacegan", "lsd"])
def test_supervised_directions_move_a_hidden_attribute_on_held_out_samples(generator, method):
    """Tags from a hidden rule (a noisy threshold of z along a secret direction): the found direction
    must raise that attribute on samples it never saw, and order them like the rule does."""
    rng = np.random.default_rng(31)
    secret = rng.standard_normal(100)
    secret /= np.linalg.norm(secret)
    train = rng.standard_normal((600, 100)).astype(np.float32)
    tags = (train @ secret + 0.3 * rng.standard_normal(600) > 0).astype(int)
    ds = compute_directions(generator, method, attribute="secret", codes=train, labels=tags)
    v = ds.vectors[0].double().numpy()
    held = Latent("z", torch.from_numpy(rng.standard_normal((200, 100))).float())
    low = apply_walks(generator, held, [Walk(ds, 0, -1.0)]).code.double().numpy()
    high = apply_walks(generator, held, [Walk(ds, 0, 1.0)]).code.double().numpy()
    assert np.all(high @ secret > low @ secret)          # the attribute goes up on every held-out face
    truth = held.code.double().numpy() @ secret > 0
    predicted = held.code.double().numpy() @ v > 0
    assert np.mean(truth == predicted) > 0.8, np.mean(truth == predicted)
    assert float(v @ secret) > 0.7, float(v @ secret)


# --------------------------------------------------------------------- SSIM
def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    from dragwalk.inversion.losses import ssim

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    clean = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy) for c in range(3)]) * 0.8   # [-0.8, 0.8]
    for noise in (0.05, 0.3, 1.0):
        noisy = np.clip(clean + noise * rng.standard_normal(clean.shape), -1, 1)
        ours = float(ssim(torch.from_numpy(noisy[None]).float(), torch.from_numpy(clean[None]).float())[0])
        theirs = structural_similarity((noisy + 1) / 2, (clean + 1) / 2, data_range=1.0, channel_axis=0,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(ours - theirs) < 1e-4, (noise, ours, theirs)


def test_a_split_at_the_median_never_puts_a_sample_on_both_sides():
    from dragwalk.directions.labelled import binary_split

    for n in (4, 5, 7, 101):
        neg, pos = binary_split(np.arange(n, dtype=float), 0.5)
        assert not set(neg) & set(pos) and len(neg) == len(pos) == n // 2
