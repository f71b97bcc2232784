"""REDs over spatial offsets: the maths against a dense scipy solve, the region slider measured on
the rendered image, and walks that export and replay exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg, ndimage

from dragwalk.directions import DirectionSet, Walk, apply_walks, compute_directions
from dragwalk.directions.offset_basis import channel_basis, offset_parts, support_cells
from dragwalk.directions.reds import region_weights
from dragwalk.directions.measures import locality, walk_change
from dragwalk.directions.reds_spatial import computed_at, spatial_jacobian
from dragwalk.models.base import Latent
from dragwalk.models.dcgan import DCGANGenerator


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    gen = DCGANGenerator(nz=8, ngf=4, resolution=16, name="tiny")
    for block in gen.blocks:                       # non-trivial batch-norm statistics
        if block.norm is not None:
            block.norm.running_mean.uniform_(-0.2, 0.2)
            block.norm.running_var.uniform_(0.5, 1.5)
            block.norm.weight.data.uniform_(0.5, 1.5)
            block.norm.bias.data.uniform_(0.0, 0.3)
    return gen.eval().requires_grad_(False)


def _tiny_mask() -> np.ndarray:
    mask = np.zeros((16, 16), np.float32)
    mask[6:9, 5:8] = 1
    return mask


def _numpy_precision(tiny, cells: np.ndarray, k: int, shrink: float) -> np.ndarray:
    """The realism prior recomputed independently: activations of fresh renders -> numpy covariance."""
    basis = channel_basis(tiny, "b1", k)
    with torch.no_grad():
        feats = tiny.synthesize(tiny.sample_codes(256, seed=0), feature_layer="b1", stop_at_feature=True).features
    x = feats.double().numpy().transpose(0, 2, 3, 1).reshape(256, 64, -1)[:, cells]      # [S, cells, C]
    x = (x @ basis.vectors.double().numpy().T).reshape(256, -1)                           # (cell, component)
    cov = np.cov(x, rowvar=False)
    cov = (1 - shrink) * cov + shrink * np.diag(np.diag(cov))
    precision = np.linalg.inv(cov)
    return precision / np.linalg.norm(precision)


def _numpy_edge_gram(jac: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The edge term recomputed independently: neighbouring-pixel differences of each Jacobian column
    (np.diff), each pair weighted by the larger of its two pixels' region weights."""
    h, w = mask.shape
    cols = jac.reshape(3, h, w, -1)
    down, across = np.diff(cols, axis=1), np.diff(cols, axis=2)
    w_down = np.maximum(mask[1:], mask[:-1])[None, :, :, None]
    w_across = np.maximum(mask[:, 1:], mask[:, :-1])[None, :, :, None]
    gram = (np.einsum("chwp,chwq->pq", down * w_down, down)
            + np.einsum("chwp,chwq->pq", across * w_across, across))
    return gram / np.linalg.norm(gram)


@pytest.mark.parametrize("realism,edges", [(0.0, 0.0), (10.0, 3.0)])
def test_spatial_reds_match_a_dense_generalised_eigensolve(tiny, realism, edges):
    from dragwalk.directions.offset_basis import SHRINK

    latent = tiny.sample(1)
    mask = _tiny_mask()
    dset = compute_directions(tiny, "reds", latent=latent, mask=mask, num=4, offsets="b1", channels=3, dilate=1,
                              realism=realism, edges=edges)
    basis = channel_basis(tiny, "b1", 3).vectors.double().numpy()          # [3, C]
    cells = support_cells(region_weights(mask, 16), 8, 1).numpy()
    c = 4

    # the image Jacobian by reverse mode over explicitly built offsets (no compression, no jvp)
    def image_of(coeffs: torch.Tensor) -> torch.Tensor:
        offset = torch.zeros(c, 64, dtype=coeffs.dtype)
        offset[:, torch.as_tensor(cells)] = (coeffs.reshape(len(cells), 3) @ torch.as_tensor(basis)).T
        return tiny.render(Latent("z", latent.code, {"b1": offset.float().reshape(1, c, 8, 8)})).reshape(-1)

    jac = torch.autograd.functional.jacobian(image_of, torch.zeros(len(cells) * 3, dtype=torch.float64))
    jac = jac.double().numpy()
    w = np.tile(mask.reshape(-1), 3)
    a_c = jac.T @ (jac * w[:, None])
    a_f = jac.T @ (jac * (1 - w)[:, None])
    a_c, a_f = a_c / np.linalg.norm(a_c), a_f / np.linalg.norm(a_f)
    if realism:
        a_f = a_f + realism * _numpy_precision(tiny, cells, 3, SHRINK)
    if edges:
        a_f = a_f + edges * _numpy_edge_gram(jac, mask)
    ridge = 1e-6 * np.mean(np.diag(a_f)) * np.eye(len(a_f))
    vals, vecs = linalg.eigh(a_c, a_f + ridge)
    top = vecs[:, -1] / np.linalg.norm(vecs[:, -1])

    # the set's top direction, read back from its offset part into (cell, component) coefficients
    offset = offset_parts(dset.extras)["b1"][0].double().reshape(c, 64).numpy()
    outside = np.setdiff1d(np.arange(64), cells)
    assert np.abs(offset[:, outside]).max() == 0                     # nothing off the support
    ours = (basis @ offset[:, cells]).T.reshape(-1)
    ours /= np.linalg.norm(ours)
    assert abs(float(ours @ top)) > 0.999, float(ours @ top)
    assert dset.values[0] == pytest.approx(vals[-1], rel=1e-3)
    assert dset.params["realism"] == realism and dset.params["edges"] == edges
    assert dset.values[0] > dset.values[-1]
    assert np.abs(dset.vectors.numpy()).max() == 0                      # offsets alone: no code part


def test_compressed_jacobian_equals_one_product_per_column(tiny, generator):
    """Cells far apart share a forward-mode product; splitting by footprint must be exact."""
    for gen, layer, mask_box in ((tiny, "b1", (slice(3, 12), slice(2, 14))),
                                 (generator, "b2", (slice(38, 54), slice(18, 46)))):
        res = gen.resolution
        mask = np.zeros((res, res), np.float32)
        mask[mask_box] = 1
        latent = gen.sample(2)
        basis = channel_basis(gen, layer, 2).vectors
        cells = support_cells(region_weights(mask, res), gen.offset_shape(layer)[1], 1)
        packed = spatial_jacobian(gen, latent, layer, cells, basis, joint=False)
        c, h, _ = gen.offset_shape(layer)
        tangents = torch.zeros(len(cells) * basis.shape[0], c, h * h)      # one column each: a cell, a basis row
        for i, cell in enumerate(cells.tolist()):
            for j in range(basis.shape[0]):
                tangents[i * basis.shape[0] + j, :, cell] = basis[j]
        dense = []
        for t in tangents.reshape(-1, c, h, h).split(32):   # a batch of images, one product per image
            codes = latent.code.expand(len(t), *latent.code.shape[1:])
            with torch.no_grad():
                _, cols = torch.func.jvp(lambda o: gen.render(Latent("z", codes, {layer: o})),
                                         (torch.zeros_like(t),), (t,))
            dense.append(cols.reshape(len(t), -1))
        dense = torch.cat(dense).T
        assert torch.allclose(packed, dense, atol=1e-6, rtol=0), float((packed - dense).abs().max())


MOUTH = np.zeros((64, 64), np.float32)
MOUTH[40:50, 22:42] = 1


def test_region_slider_changes_the_region_and_holds_the_rest(generator):
    base = generator.sample(3)
    dset = compute_directions(generator, "reds", latent=base, mask=MOUTH, num=3)   # the default: offsets
    assert offset_parts(dset.extras), "the default region set should move spatial offsets"
    with torch.no_grad():
        before = generator.render(base)[0].permute(1, 2, 0).numpy()
        after = generator.render(apply_walks(generator, base, [Walk(dset, 0, 3.0)]))[0].permute(1, 2, 0).numpy()
    change = np.abs(after.astype(np.float64) - before).mean(axis=2)          # numpy, on the rendered images
    inside = change[MOUTH > 0].mean()
    square = np.ones((3, 3), bool)
    ring = ndimage.binary_dilation(MOUTH > 0, square, iterations=12) & ~(MOUTH > 0)
    far = ~ndimage.binary_dilation(MOUTH > 0, square, iterations=12)   # > support (1 cell) + footprint
    assert inside > 0.05, inside                     # a visible edit: > 6/255 on average inside
    assert change[far].max() == 0.0                  # beyond the support's footprint nothing moves at all
    assert change[ring].mean() < 0.1 * inside, (change[ring].mean(), inside)
    # locality on the image: at least 5x the best of the first 8 SeFa directions at the same in-region change
    sefa = compute_directions(generator, "sefa", num=8)
    best_other = 0.0
    with torch.no_grad():
        for i in range(8):
            moved = generator.render(apply_walks(generator, base, [Walk(sefa, i, 1.0)]))[0].permute(1, 2, 0).numpy()
            ch = np.abs(moved - before).mean(axis=2)
            best_other = max(best_other, ch[MOUTH > 0].sum() / ch.sum())
    assert change[MOUTH > 0].sum() / change.sum() > min(0.99, 5 * best_other)


def test_spatial_walk_refuses_density_and_curved(generator):
    dset = compute_directions(generator, "reds", latent=generator.sample(3), mask=MOUTH, num=2)
    for kind in ("density", "curved"):
        with pytest.raises(ValueError, match="offsets"):
            Walk(dset, 0, 1.0, kind)
    with pytest.raises(ValueError, match="channels"):
        compute_directions(generator, "reds", latent=generator.sample(3), mask=MOUTH, offsets="b2", channels=0)
    with pytest.raises(ValueError, match="no spatial offset|no layer"):
        compute_directions(generator, "reds", latent=generator.sample(3), mask=MOUTH, offsets="image")
    with pytest.raises(ValueError, match="joint"):
        compute_directions(generator, "reds", latent=generator.sample(3), mask=MOUTH, joint="no")
    for bad in (-1.0, float("nan"), 1e3):
        with pytest.raises(ValueError, match="realism"):
            compute_directions(generator, "reds", latent=generator.sample(3), mask=MOUTH, realism=bad)
        with pytest.raises(ValueError, match="edges"):
            compute_directions(generator, "reds", latent=generator.sample(3), mask=MOUTH, edges=bad)
    big = np.ones((64, 64), np.float32)
    big[:2] = 0
    with pytest.raises(ValueError, match="more than"):       # the eigenproblem's size is bounded
        compute_directions(generator, "reds", latent=generator.sample(3), mask=big, offsets="b3")


def test_spatial_walk_exports_and_saves_exactly(generator, tmp_path):
    from dragwalk.latent_io import load_latent, save_latent

    base = generator.sample(4)
    dset = compute_directions(generator, "reds", latent=base, mask=MOUTH, num=2)
    assert computed_at(dset, base) and not computed_at(dset, generator.sample(5))
    walked = apply_walks(generator, base, [Walk(dset, 0, 2.5), Walk(dset, 1, -1.0)])
    assert set(walked.offsets) == set(offset_parts(dset.extras))
    dset.save(tmp_path / "set.safetensors")
    again = apply_walks(generator, base, [Walk(DirectionSet.load(tmp_path / "set.safetensors"), 0, 2.5),
                                          Walk(DirectionSet.load(tmp_path / "set.safetensors"), 1, -1.0)])
    for name in walked.offsets:
        assert torch.equal(again.offsets[name], walked.offsets[name])
    with torch.no_grad():
        image = generator.render(walked)
    for suffix in (".npz", ".json"):
        path = save_latent(walked, tmp_path / f"walked{suffix}", model=generator.name)
        loaded = load_latent(path, generator)
        assert torch.equal(loaded.code, walked.code)
        assert set(loaded.offsets) == set(walked.offsets)
        with torch.no_grad():
            assert torch.equal(generator.render(loaded), image)


def test_region_walk_replays_exactly_from_the_edit_log(generator):
    from dragwalk.server.replay import pack_mask, replay_log
    from dragwalk.server.session import SessionDocument

    base = generator.sample(6)
    params = {"num": 3}
    dset = compute_directions(generator, "reds", latent=base, mask=MOUTH, **params)
    walked = apply_walks(generator, base, [Walk(dset, 1, 2.0)])
    doc = SessionDocument.create("s", generator.name, 64, base, record={"seed": 6, "truncation": 1.0, "space": "z"})
    doc.push("walk", "walk reds[1] +2", walked,
             {"set": {"method": "reds", "params": params}, "walks": [{"index": 1, "amount": 2.0}],
              "walk_kind": "linear", "region": {"mask": pack_mask(MOUTH)}})
    log = doc.edit_log()
    final, reports = replay_log(generator, log)
    assert [r.how for r in reports] == ["recomputed"]
    assert reports[0].deviation == 0.0
    assert torch.equal(final.code, walked.code)
    assert all(torch.equal(final.offsets[k], walked.offsets[k].cpu()) for k in walked.offsets)
    # a log without the region mask falls back to the recorded latent; a bad mask is refused
    del log["operations"][0]["region"]
    assert [r.how for r in replay_log(generator, log)[1]] == ["recorded"]
    log["operations"][0]["region"] = {"mask": {"shape": [8, 8], "bits": ""}}
    with pytest.raises(ValueError, match="64x64"):
        replay_log(generator, log)


def test_sparse_gram_matches_numpy():
    from dragwalk.directions.reds_spatial import sparse_gram

    rng = np.random.default_rng(0)
    jac = np.zeros((300, 20))
    for c in range(20):                                   # columns with small, differing supports
        rows = rng.choice(300, size=rng.integers(1, 30), replace=False)
        jac[rows, c] = rng.normal(size=rows.size)
    w = rng.uniform(size=300)
    dense = jac.T @ (jac * w[:, None])
    dense /= np.linalg.norm(dense)
    ours = sparse_gram(torch.from_numpy(jac).float(), torch.from_numpy(w).float()).numpy()
    assert np.allclose(ours, dense, atol=1e-6)


def test_default_region_set_carries_the_realism_term(generator):
    """The default ranks plausible offsets first: its top direction is shorter under the
    activations' own Gaussian (numpy covariance of real renders on the support) per unit of
    in-region image change than the top direction without the term, at a small loss of locality."""
    from dragwalk.directions.offset_basis import SHRINK
    from dragwalk.directions.reds_spatial import REALISM

    base = generator.sample(3)
    plain = compute_directions(generator, "reds", latent=base, mask=MOUTH, num=1, realism=0.0)
    real = compute_directions(generator, "reds", latent=base, mask=MOUTH, num=1)
    assert real.params["realism"] == REALISM > 0
    layer = real.params["offsets"]
    k = real.params["channels"]
    cells = support_cells(region_weights(MOUTH, 64), generator.offset_shape(layer)[1], real.params["dilate"]).numpy()
    basis = channel_basis(generator, layer, k).vectors.double().numpy()
    with torch.no_grad():
        feats = generator.synthesize(generator.sample_codes(256, seed=0), feature_layer=layer,
                                     stop_at_feature=True).features
    c, h, w = generator.offset_shape(layer)
    x = feats.double().numpy().reshape(256, c, h * w)[:, :, cells]                 # [S, C, cells]
    x = np.einsum("sch,kc->shk", x, basis).reshape(256, -1)
    cov = np.cov(x, rowvar=False)
    precision = np.linalg.inv((1 - SHRINK) * cov + SHRINK * np.diag(np.diag(cov)))

    def implausibility_per_change(dset) -> tuple[float, float]:
        offset = offset_parts(dset.extras)[layer][0].double().numpy().reshape(c, h * w)[:, cells]
        a = (basis @ offset).T.reshape(-1)                                            # (cell, component)
        change = walk_change(generator, base, dset, 0, 1.0)
        inside = float(change.abs().mean(0)[torch.from_numpy(MOUTH) > 0].pow(2).mean())
        return float(a @ precision @ a) / inside, locality(change, torch.from_numpy(MOUTH))

    (p_plain, loc_plain), (p_real, loc_real) = implausibility_per_change(plain), implausibility_per_change(real)
    assert p_real < 0.5 * p_plain, (p_real, p_plain)
    assert loc_real > 0.8 * loc_plain, (loc_real, loc_plain)


def test_region_bench_breaks_locality_ties_by_the_methods_order():
    from dragwalk.bench.regions import most_local

    mask = torch.zeros(8, 8)
    mask[2:4, 2:4] = 1

    def change(inside: float, outside: float) -> torch.Tensor:
        return (mask * inside + (1 - mask) * outside).expand(3, 8, 8)

    # localities 0, 16 (all inside: the cap 1 / area), 16, just under 16: ties go to the earliest
    tied = torch.stack([change(0.0, 1.0), change(1.0, 0.0), change(2.0, 0.0), change(1.0, 1e-4)])
    assert most_local(tied, mask) == 1
    assert most_local(tied[[0, 3, 1]], mask) == 1      # within 1 %: the earlier of the two
    spread = torch.stack([change(1.0, 0.5), change(1.0, 0.1)])
    assert most_local(spread, mask) == 1


def test_default_region_set_holds_the_regions_edges(generator):
    """The edge term puts smooth changes first: per unit of in-region change, the default set's top
    direction changes the image gradients in and at the region (numpy, on the rendered images)
    less than the same set without the term, at a small loss of locality."""
    from dragwalk.directions.reds_spatial import EDGES

    base = generator.sample(3)
    plain = compute_directions(generator, "reds", latent=base, mask=MOUTH, num=1, edges=0.0)
    held = compute_directions(generator, "reds", latent=base, mask=MOUTH, num=1)
    assert held.params["edges"] == EDGES > 0
    near = ndimage.binary_dilation(MOUTH > 0, np.ones((3, 3), bool))

    def edge_change_per_change(dset) -> tuple[float, float]:
        change = walk_change(generator, base, dset, 0, 1.0).double().numpy()          # [3, H, W]
        down, across = np.diff(change, axis=1) ** 2, np.diff(change, axis=2) ** 2
        edge = down[:, near[1:] | near[:-1]].sum() + across[:, near[:, 1:] | near[:, :-1]].sum()
        return (float(edge / (change[:, MOUTH > 0] ** 2).sum()),
                locality(torch.from_numpy(change), torch.from_numpy(MOUTH)))

    (e_plain, loc_plain), (e_held, loc_held) = edge_change_per_change(plain), edge_change_per_change(held)
    assert e_held < 0.9 * e_plain, (e_held, e_plain)      # measured: 19 % less
    assert loc_held > 0.8 * loc_plain, (loc_held, loc_plain)


def test_region_bench_held_out_rule_is_decided_before_editing(tiny):
    """``--region-min-score``: the held-out faces are the first seeds whose detection score (before any
    edit) reaches the threshold; 0 keeps every face dlib finds (the original protocol)."""
    from dragwalk.bench.regions import _faces, region_table

    class Analyzer:                     # scores in seed order; None = no face
        def __init__(self, scores):
            self.scores, self.current = list(scores), None

        def detect(self, image):
            self.current = self.scores.pop(0)
            return None if self.current is None else object()

        def detection_score(self, image):
            return self.current

        def descriptor(self, image, face):
            return np.zeros(128)

    scores = [None, 0.15, 0.5, 0.2, 1.0, 0.4]
    assert [h[0] for h in _faces(tiny, Analyzer(scores), 100, 2, min_score=0.3)] == [102, 104]
    assert [h[0] for h in _faces(tiny, Analyzer(scores), 100, 2)] == [101, 102]
    for bad in (-0.1, 9.0):
        with pytest.raises(ValueError, match="min_score"):
            region_table(tiny, min_score=bad)


def test_face_screen_keeps_candidates_found_on_both_sides():
    """``keep_face``: a candidate stays when the face is detected after both its + and - probe; the
    order is the candidates' own; probing stops once ``num`` are kept (numpy min over the two sides)."""
    from dragwalk.directions.face_screen import CHUNK, keep_face

    rng = np.random.default_rng(0)
    table = rng.uniform(-1.0, 1.0, (12, 2))              # detection score after (+, -) of each candidate
    table[1] = (0.5, -0.2)                               # found after + only: not kept
    table[2] = (-0.3, 0.4)                               # found after - only: not kept
    calls: list[int] = []

    def render(indices, signs):                          # image value = the (candidate, side) it shows
        calls.append(len(indices))
        codes = torch.tensor([2 * i + (s < 0) for i, s in zip(indices, signs)], dtype=torch.float32)
        return (codes / 127.5 - 1.0).reshape(-1, 1, 1, 1).expand(-1, 3, 2, 2)

    def scorer(image):
        code = int(image[0, 0, 0])
        return float(table[code // 2, code % 2])

    worst = table.min(axis=1)
    for num in (1, 3, 12):
        calls.clear()
        order, seen = keep_face(render, 12, num, 0.3, scorer)
        kept = np.flatnonzero(worst > 0)
        assert order == kept[:num].tolist()
        probed = int(np.ceil((kept[num - 1] + 1) / CHUNK) * CHUNK) if len(kept) >= num else 12
        assert sum(calls) == 2 * min(probed, 12)
        np.testing.assert_allclose(np.array(seen)[:probed], worst[:probed])
        assert np.isnan(seen[probed:]).all()
    lost = np.full((12, 2), -0.5)
    lost[4] = (0.2, -0.1)                                # no candidate keeps it: the plain order
    table[:] = lost
    assert keep_face(render, 12, 3, 0.3, scorer)[0] == [0, 1, 2]
    with pytest.raises(ValueError, match="face"):
        keep_face(render, 12, 3, -0.1, scorer)


def test_region_set_offers_only_sliders_that_keep_the_face(tiny, monkeypatch):
    """With a stand-in detector that loses the face when the region's red shifts too much, every
    direction of a screened region set (``keep_face``) keeps it on both sides at the matched in-region
    change (measured on rendered images, one secant step from a trial walk), while the set without the
    screen has some that lose it."""
    from dragwalk.bench.regions import _render_walks
    from dragwalk.directions import face_screen
    from dragwalk.imaging import to_uint8

    mask = _tiny_mask()
    base = tiny.sample(3)
    with torch.no_grad():
        before = tiny.render(base)[0]
    red = to_uint8(before)[..., 0].astype(np.float64)
    pool = compute_directions(tiny, "reds", latent=base, mask=mask, num=8, keep_face=False)
    trial = (_render_walks(tiny, base, pool, list(range(8)), [0.3] * 8) - before).abs().mean(1)[:, mask > 0]
    amounts = (0.3 * face_screen.PROBE / trial.mean(1)).tolist()          # in-region mean |change| ~ PROBE
    walked = _render_walks(tiny, base, pool, list(range(8)) * 2, amounts + [-a for a in amounts])

    def red_shift(image: np.ndarray) -> float:           # uint8 H x W x 3 -> |mean red change in the region|
        return abs(float((image[..., 0].astype(np.float64) - red)[mask > 0].mean()))

    sides = np.array([red_shift(to_uint8(image)) for image in walked]).reshape(2, 8)
    shifts = sides.max(axis=0)
    limit = float(np.median(shifts))
    monkeypatch.setattr(face_screen, "face_scorer", lambda: (lambda image: 1.0 - red_shift(image) / limit))
    kept = compute_directions(tiny, "reds", latent=base, mask=mask, num=4, keep_face=True)
    layer = kept.params["offsets"]
    rows = offset_parts(pool.extras)[layer].reshape(8, -1)
    picked = [int(torch.argmin((rows - r).abs().sum(1))) for r in offset_parts(kept.extras)[layer].reshape(len(kept), -1)]
    assert kept.params["keep_face"] and 1 <= len(kept) <= 4
    assert all(shifts[i] < 1.15 * limit for i in picked), (shifts[picked], limit)
    assert picked == sorted(picked)                     # the screen keeps the quotient order
    assert (shifts[:4] > 1.15 * limit).any()            # without the screen some would lose the face
