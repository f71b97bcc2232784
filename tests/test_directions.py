"""Direction methods and walks on the real default model (digiface-dcgan64, CPU)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from dragwalk.directions import (METHODS, DirectionCache, DirectionSet, Walk, apply_walks,
                                 compute_directions)
from dragwalk.directions.measures import latent_norms, locality, matched_amount, orthogonality, walk_change

#: small settings so every method runs in seconds; the benchmark times the real ones (GANSpace and
#: SFVQ share one PCA of the same 1000 samples)
FAST = {
    "sefa": {},
    "ganspace": {"num": 20, "samples": 1000},
    "dplase": {"k": 8, "iters": 40, "refine": True},
    "sfvq": {"bits": 4, "samples": 1000},
}

#: the mouth of seed 1's face (dlib landmarks 48-59 span x 21..42, y 48..53)
MOUTH = np.zeros((64, 64), np.float32)
MOUTH[45:57, 18:46] = 1


@pytest.fixture(scope="session")
def sets(generator) -> dict[str, DirectionSet]:
    return {name: compute_directions(generator, name, **params) for name, params in FAST.items()}


@pytest.fixture(scope="session")
def base(generator):
    return generator.sample(1)


def image_change(generator, latent, walks) -> float:
    with torch.no_grad():
        before = generator.render(latent)
        after = generator.render(apply_walks(generator, latent, walks))
    return float((after - before).abs().mean())


def test_methods_table_is_json_and_complete():
    assert set(METHODS) == {"sefa", "ganspace", "dplase", "reds", "sfvq", "interfacegan", "lsd"}
    data = json.loads(json.dumps(METHODS))
    for info in data.values():
        assert {"label", "description", "params", "needs_mask", "needs_labels"} <= set(info)
    assert data["reds"]["needs_mask"] and data["interfacegan"]["needs_labels"]


@pytest.mark.parametrize("method", sorted(FAST))
def test_every_method_gives_unit_vectors_that_change_the_face(generator, sets, base, method):
    ds = sets[method]
    assert ds.model == generator.name and ds.space == "z" and len(ds) > 0
    assert torch.allclose(ds.vectors.norm(dim=1), torch.ones(len(ds)), atol=1e-4)
    assert torch.isfinite(ds.scales).all() and (ds.scales > 0).all()
    for kind in ("linear", "density"):
        assert image_change(generator, base, [Walk(ds, 0, 3.0, kind)]) > 0.01, (method, kind)


def test_sefa_is_sorted_orthonormal_and_fast(generator, sets):
    ds = sets["sefa"]
    assert all(a >= b for a, b in zip(ds.values, ds.values[1:]))
    assert orthogonality(ds.vectors) < 1e-4
    compute_directions(generator, "sefa")
    started = time.perf_counter()
    compute_directions(generator, "sefa")
    assert time.perf_counter() - started < 2.0  # target 0.1 s; loose for a shared CI box


def test_dplase_directions_are_orthonormal_with_channel_groups(sets):
    ds = sets["dplase"]
    assert orthogonality(ds.vectors) < 0.05
    masks = ds.extras["channel_masks"]
    assert masks.shape == (len(ds), 512) and (masks.sum(dim=1) > 0).all()


def test_set_save_load_roundtrip(tmp_path, sets):
    ds = sets["dplase"]
    path = ds.save(tmp_path / "d.safetensors")
    back = DirectionSet.load(path)
    assert torch.equal(back.vectors, ds.vectors) and torch.equal(back.scales, ds.scales)
    assert torch.equal(back.extras["channel_masks"], ds.extras["channel_masks"])
    assert back.to_dict() == ds.to_dict()
    json.dumps(ds.to_dict())
    with pytest.raises(ValueError):
        (tmp_path / "junk.safetensors").write_bytes(b"not a file")
        DirectionSet.load(tmp_path / "junk.safetensors")


def test_reds_region_edit_is_local_and_fast(generator, sets, base):
    mask = torch.tensor(MOUTH)
    compute_directions(generator, "reds", latent=base, mask=MOUTH, num=3)  # warm-up (vmap)
    started = time.perf_counter()
    reds = compute_directions(generator, "reds", latent=base, mask=MOUTH, num=3)
    seconds = time.perf_counter() - started
    assert seconds < 5.0  # target < 1 s alone; the CI box is shared
    target = 0.01  # mean |pixel change| both directions are matched to
    a = matched_amount(generator, base, reds, 0, target, iters=10)
    reds_loc = locality(walk_change(generator, base, reds, 0, a), mask)
    sefa = sets["sefa"]
    sefa_loc = max(locality(walk_change(generator, base, sefa, i,
                                        matched_amount(generator, base, sefa, i, target, iters=10)), mask)
                   for i in range(3))
    change = walk_change(generator, base, reds, 0, a).abs().sum(0)
    inside = float((change * mask).sum() / mask.sum())
    outside = float((change * (1 - mask)).sum() / (1 - mask).sum())
    assert inside > 2.5 * outside
    assert reds_loc > 3 * sefa_loc, (reds_loc, sefa_loc)


def test_curved_reds_walk_follows_the_region(generator, base):
    reds = compute_directions(generator, "reds", latent=base, mask=MOUTH, num=2, offsets="none")
    straight = apply_walks(generator, base, [Walk(reds, 0, 2.0, "linear")])
    curved = apply_walks(generator, base, [Walk(reds, 0, 2.0, "curved", steps=2)])
    assert not torch.allclose(straight.code, curved.code)
    with torch.no_grad():
        change = (generator.render(curved) - generator.render(base))[0]
    assert float(change.abs().mean()) > 0.005
    assert locality(change, torch.tensor(MOUTH)) > 1.5


def test_density_walk_keeps_the_norm(generator, sets, base):
    ds = sets["sefa"]
    start = float(latent_norms(base.code)[0])
    for amount in (2.0, 5.0, -8.0):
        dens = apply_walks(generator, base, [Walk(ds, 1, amount, "density")])
        lin = apply_walks(generator, base, [Walk(ds, 1, amount, "linear")])
        assert abs(float(latent_norms(dens.code)[0]) - start) < 1e-3
        assert float(latent_norms(lin.code)[0]) > start + 0.1


def test_several_sliders_combine(generator, sets, base):
    a, b = Walk(sets["sefa"], 0, 2.0), Walk(sets["ganspace"], 1, -1.5)
    both = apply_walks(generator, base, [a, b])
    expected = base.code + a.step + b.step
    assert torch.allclose(both.code, expected, atol=1e-5)
    assert image_change(generator, apply_walks(generator, base, [a]), [b]) > 0.005
    assert torch.equal(base.code, generator.sample(1).code)  # the base is untouched
    # density sliders are combined and put back on the shell once
    dens = apply_walks(generator, base, [Walk(sets["sefa"], 0, 3.0, "density"),
                                         Walk(sets["sfvq"], 2, 3.0, "density")])
    assert abs(float(dens.code.norm() - base.code.norm())) < 1e-3


def test_walk_validation(sets):
    with pytest.raises(ValueError, match="out of range"):
        Walk(sets["sefa"], 999, 1.0)
    with pytest.raises(ValueError, match="kind"):
        Walk(sets["sefa"], 0, 1.0, "zigzag")
    with pytest.raises(ValueError, match="curved"):
        Walk(sets["sefa"], 0, 1.0, "curved")
    with pytest.raises(ValueError, match="finite"):
        Walk(sets["sefa"], 0, float("nan"))


def test_bad_method_and_params_are_refused(generator):
    with pytest.raises(ValueError, match="unknown direction method"):
        compute_directions(generator, "magic")
    with pytest.raises(ValueError, match="unknown parameter"):
        compute_directions(generator, "sefa", nmu=3)
    with pytest.raises(ValueError, match="mask"):
        compute_directions(generator, "reds")
    with pytest.raises(ValueError, match="empty"):
        compute_directions(generator, "reds", mask=np.zeros((64, 64)))


def test_region_parameters_that_would_do_nothing_are_refused():
    """REDs over the code (offsets "none") has no channels, realism, face screen...: setting one
    is refused by name, not silently ignored; at their defaults, or with offsets on, they pass."""
    from dragwalk.directions.methods import resolved_params

    for name, value in [("channels", 8), ("keep_face", True), ("realism", 0.0), ("joint", True),
                        ("dilate", 2), ("edges", 0.0)]:
        with pytest.raises(ValueError, match=f"{name} only act.*offsets is 'none'"):
            resolved_params("reds", {"offsets": "none", name: value})
        assert resolved_params("reds", {"offsets": "auto", name: value})[name] == value
    assert resolved_params("reds", {"offsets": "none", "channels": 4})["offsets"] == "none"
    with pytest.raises(ValueError, match="keep_face"):
        resolved_params("reds", {"offsets": None, "keep_face": True})


def test_cache_hit_is_fast_identical_and_persistent(generator, tmp_path):
    cache = DirectionCache(tmp_path)
    first = cache.get(generator, "sfvq", bits=3, samples=1000)
    started = time.perf_counter()
    again = cache.get(generator, "sfvq", samples=1000, bits=3, epochs=2)  # same key after defaults
    assert time.perf_counter() - started < 0.05
    assert again is first
    files = list(tmp_path.rglob("sfvq-*.safetensors"))
    assert len(files) == 1
    fresh = DirectionCache(tmp_path)  # a new process would see the file
    started = time.perf_counter()
    loaded = fresh.get(generator, "sfvq", bits=3, samples=1000)
    assert time.perf_counter() - started < 0.5
    assert torch.equal(loaded.vectors, first.vectors)
    assert torch.equal(loaded.extras["codebook"], first.extras["codebook"])
    # REDs for a painted region are per request: never written to disk
    cache.get(generator, "reds", mask=MOUTH, num=2)
    assert not list(tmp_path.rglob("reds-*"))


def test_sfvq_projection_and_segment_augmentation(generator, sets, base):
    from dragwalk.directions import sfvq

    ds = sets["sfvq"]
    assert len(ds) == 2 ** 4 - 1
    losses = ds.params["loss_per_level"]
    assert losses[-1] < losses[0]  # more points fit the data better
    segment, t = sfvq.project(generator, ds, base)
    assert 0 <= segment < len(ds) and 0.0 <= t <= 1.0
    latents = sfvq.segment_latents(generator, ds, 3, 4, base)
    with torch.no_grad():
        images = [generator.render(lat) for lat in latents]
    steps = [float((b - a).abs().mean()) for a, b in zip(images, images[1:])]
    assert all(s > 1e-3 for s in steps)


@pytest.mark.slow
def test_supervised_directions_move_their_landmark_score(generator):
    from dragwalk.directions.scorers import score_latents

    faces = generator.sample_codes(24, seed=4242)
    for method in ("interfacegan", "lsd"):
        # 200 scored samples (dlib on each: most of this test's time): 0.88-1.0 of the faces move the
        # right way (400: 0.94-1.0)
        ds = compute_directions(generator, method, attribute="mouth_open,head_yaw", samples=200)
        assert ds.labels == ["mouth_open", "head_yaw"]
        for index, name in enumerate(ds.labels):
            low = score_latents(generator, apply_walks(generator, faces, [Walk(ds, index, -2.0)]))[name]
            high = score_latents(generator, apply_walks(generator, faces, [Walk(ds, index, 2.0)]))[name]
            ok = np.isfinite(low) & np.isfinite(high)
            assert ok.sum() >= 8
            assert np.mean(high[ok] - low[ok]) > 0, (method, name)
            assert np.mean(high[ok] > low[ok]) >= 0.7, (method, name)


def test_pipelined_scoring_gives_each_face_its_own_scores_in_order(generator):
    """Batches render in a helper thread while dlib scores the last one: the scores must be those
    of scoring every face alone, in order, also when the last batch is short."""
    from dragwalk.directions.scorers import score_images, score_latents

    faces = generator.sample_codes(5, seed=77)
    got = score_latents(generator, faces, batch=2)
    with torch.no_grad():
        alone = [score_images(generator.render(faces.derive(faces.code[i:i + 1], {}))) for i in range(5)]
    for name, values in got.items():
        np.testing.assert_array_equal(values, np.concatenate([a[name] for a in alone]))
    assert np.isfinite(got["mouth_open"]).sum() >= 2          # faces were found, not all NaN


def test_faces_are_detected_in_parallel_and_scored_as_one_thread_scores_them(generator, monkeypatch):
    """Scoring runs dlib's detector (most of a face's cost) on two threads at once, each with its own
    detector: two detections must be inside dlib together (a barrier both have to reach), and the
    scores must be those one thread gives, in order."""
    import threading

    from dragwalk.directions.scorers import score_images
    from dragwalk.faces import face_analyzer

    analyzer = face_analyzer()
    with torch.no_grad():
        images = generator.render(generator.sample_codes(6, seed=78))
    serial = score_images(images, threads=1)

    barrier = threading.Barrier(2, timeout=10)
    inside: list[int] = []

    class Meeting:
        """A detector whose first two calls wait for each other (a lock around them never meets)."""

        def __init__(self, detector):
            self.detector = detector

        def __call__(self, *args):
            inside.append(threading.get_ident())
            if len(inside) <= 2:
                barrier.wait()
            return self.detector(*args)

    while True:                       # detectors made by earlier tests: not this test's wrappers
        try:
            analyzer._idle.get_nowait()
        except Exception:
            break
    make = analyzer._dlib.get_frontal_face_detector
    monkeypatch.setattr(analyzer, "_dlib", type("Dlib", (), {
        "get_frontal_face_detector": staticmethod(lambda: Meeting(make())),
        "rectangle": analyzer._dlib.rectangle}))
    parallel = score_images(images, threads=2)
    assert len(set(inside[:2])) == 2 and not barrier.broken
    for name, values in serial.items():
        np.testing.assert_array_equal(parallel[name], values)
    assert np.isfinite(serial["mouth_open"]).sum() >= 2


def test_faces_asked_for_twice_at_once_are_scored_once(generator, tmp_path, monkeypatch):
    """InterFaceGAN and LSD (different sets) asked at the same moment share one scoring and one
    file write: the second request waits for the first and reads its scores."""
    import threading
    import time as clock

    from dragwalk.directions import scorers
    from dragwalk.directions.labelled import scored_samples

    calls = []

    def slow_scores(gen, latents, batch=64):
        calls.append(threading.get_ident())
        clock.sleep(0.5)                          # long enough for the other request to arrive
        return {name: np.full(latents.batch, float(len(calls))) for name in scorers.SCORERS}

    monkeypatch.setattr(scorers, "score_latents", slow_scores)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(scored_samples(generator, 12, 3, root=tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(calls) == 1 and len(results) == 2
    for name in scorers.SCORERS:
        np.testing.assert_array_equal(results[0][1][name], results[1][1][name])
    assert torch.equal(results[0][0], results[1][0])
    assert [p.name for p in tmp_path.rglob("*.npz")] == ["scored-z-12-3.npz"]    # no temporary left


@pytest.mark.slow
def test_person_tags_give_a_direction(generator):
    from dragwalk.directions.labelled import scored_samples

    codes, scores = scored_samples(generator, 200, 0)  # cached by the test above
    ok = np.isfinite(scores["head_yaw"])
    tags = (scores["head_yaw"][ok] > np.median(scores["head_yaw"][ok])).astype(int)
    tagged = compute_directions(generator, "interfacegan", attribute="turned", codes=codes[ok].numpy(),
                                labels=tags)
    scored = compute_directions(generator, "interfacegan", attribute="head_yaw", samples=200)
    assert tagged.labels == ["turned"]
    assert float(tagged.vectors[0] @ scored.vectors[0]) > 0.5


def test_cached_sets_record_what_produced_them(generator, tmp_path):
    from dragwalk import __version__
    from dragwalk.directions.base import model_fingerprint

    cache = DirectionCache(tmp_path)
    cache.get(generator, "sefa", num=4)
    (path,) = tmp_path.rglob("sefa-*.safetensors")
    loaded = DirectionSet.load(path)
    prov = loaded.provenance
    assert prov["method"] == "sefa" and prov["params"] == {"num": 4, "layers": None}
    assert prov["model"] == generator.name and prov["model_hash"] == model_fingerprint(generator)
    assert prov["dragwalk"] == __version__ and prov["format_version"] >= 1


def test_a_truncated_dplase_run_is_never_cached_under_the_full_runs_key(generator, tmp_path):
    cache = DirectionCache(tmp_path)
    short = cache.get(generator, "dplase", k=2, iters=400, refine=False, time_limit=0.05)
    assert short.params["truncated"] and short.params["iterations"] < 400
    assert not list(tmp_path.rglob("dplase-*")), "a run cut short by the time limit was written to disk"
    full = cache.get(generator, "dplase", k=2, iters=3, refine=False, time_limit=None)
    assert not full.params["truncated"] and full.params["iterations"] == 3
    assert len(list(tmp_path.rglob("dplase-*.safetensors"))) == 1
