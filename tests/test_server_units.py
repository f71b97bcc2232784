"""Pure parts of the server: frames and credits, the session document, the store, the scheduler,
message validation and settings. No network; the document tests use the real default model."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from dragwalk.server.config import Settings
from dragwalk.server.frames import CreditGate, pack_frame, unpack_frame
from dragwalk.server.messages import MessageError, parse_message
from dragwalk.server.scheduler import Scheduler
from dragwalk.drag.points import PointError
from dragwalk.server.session import HistoryError, SessionDocument, mask_from_png, mask_to_png
from dragwalk.server.store import SQLiteStore
from dragwalk.server.stores import open_store


def test_frame_header_is_twelve_bytes_big_endian():
    frame = pack_frame(1, 258, 7, b"jpeg")
    assert frame[:12] == b"DW\x01\x01" + (258).to_bytes(4, "big") + (7).to_bytes(4, "big")
    assert unpack_frame(frame) == (1, 258, 7, b"jpeg")
    with pytest.raises(ValueError):
        unpack_frame(b"XX" + frame[2:])


def test_credit_gate_keeps_only_the_newest_frame():
    gate = CreditGate(credits=2)
    first, second = gate.offer(1, 1, b"a"), gate.offer(1, 2, b"b")
    assert unpack_frame(first)[1:3] == (1, 1) and unpack_frame(second)[1:3] == (2, 2)
    assert gate.offer(1, 3, b"c") is None and gate.offer(1, 4, b"d") is None    # no credit: held
    assert gate.dropped == 1                                                    # step 3 was superseded
    assert gate.ack(99) is None                                                 # unknown seq: no credit
    sent = gate.ack(1)
    assert unpack_frame(sent) == (1, 3, 4, b"d")                                # newest, next seq
    assert gate.ack(1) is None and gate.credits == 0                            # repeated ack ignored
    assert gate.ack(2) is None and gate.credits == 1


@pytest.fixture(scope="module")
def doc_parts(generator):
    return generator, [generator.sample(s) for s in range(4)]


def test_history_undo_redo_goto_and_cap(doc_parts):
    gen, latents = doc_parts
    doc = SessionDocument.create("abcdefgh", gen.name, 64, latents[0], "start", "seed 0",
                                 {"seed": 0, "truncation": 1.0, "space": "z"}, max_history=3)
    doc.push("reseed", "seed 1", latents[1], {"seed": 1})
    doc.push("reseed", "seed 2", latents[2], {"seed": 2})
    assert doc.cursor == 2 and doc.can_undo and not doc.can_redo
    doc.undo(); doc.undo()
    assert doc.cursor == 0 and not doc.can_undo
    with pytest.raises(HistoryError):
        doc.undo()
    doc.redo()
    doc.push("reseed", "seed 3", latents[3], {"seed": 3})      # drops the redo branch (seed 2)
    assert [e.label for e in doc.history] == ["seed 0", "seed 1", "seed 3"]
    doc.push("reseed", "seed 0 again", latents[0], {"seed": 0})  # cap 3: the oldest goes
    assert [e.label for e in doc.history] == ["seed 1", "seed 3", "seed 0 again"] and doc.cursor == 2
    with pytest.raises(HistoryError):
        doc.goto(3)
    doc.goto(0)
    assert doc.origin()["seed"] == 1


def test_payload_roundtrip_with_mask_and_live_drag(doc_parts):
    gen, latents = doc_parts
    doc = SessionDocument.create("abcdefgh", gen.name, 64, latents[0], record={"seed": 0})
    doc.push("reseed", "seed 1", latents[1], {"seed": 1})
    doc.set_points([[1, 2]], [[3.5, 4]])
    mask = np.zeros((64, 64), bool)
    mask[10:20, 5:30] = True
    doc.set_mask(mask)
    doc.set_live(latents[2], {"method": "draggan", "label": "drag (draggan)"})
    back = SessionDocument.from_payload(doc.to_payload())
    assert [e.kind for e in back.history] == ["start", "reseed", "drag"]
    assert "interrupted" in back.history[-1].label
    assert back.cursor == 2 and back.live is None
    assert back.handles == [(1.0, 2.0)] and back.targets == [(3.5, 4.0)]
    assert np.array_equal(back.mask, mask)
    assert (back.current.code == latents[2].code.cpu()).all()
    assert (back.history[1].latent.code == latents[1].code.cpu()).all()
    log = back.edit_log()
    assert log["start"] == {"seed": 0} and [op["kind"] for op in log["operations"]] == ["reseed", "drag"]
    copy = SessionDocument.from_edit_log("ijklmnop", log, 64, gen)
    assert (copy.current.code == back.current.code).all()


def test_points_and_mask_belong_to_the_history(doc_parts):
    """Undo/redo/goto put back the points and mask last used on that image; a drag's entry starts
    with its tracked handles, the entry before it keeps the points the drag started from."""
    gen, latents = doc_parts
    doc = SessionDocument.create("abcdefgh", gen.name, 64, latents[0], record={"seed": 0})
    mask_a = np.zeros((64, 64), bool)
    mask_a[5:9, 5:9] = True
    doc.set_points([[10, 10], [20, 20]], [[14, 10], [20, 25]])
    doc.set_mask(mask_a)
    doc.push("drag", "drag", latents[1], {}, points=([[13.25, 10.5], [20, 23]], [[14, 10], [20, 25]]))
    assert doc.handles == [(13.25, 10.5), (20.0, 23.0)] and np.array_equal(doc.mask, mask_a)
    doc.set_points([[30, 30]], [[31, 31]])
    doc.set_mask(None)
    doc.undo()
    assert doc.handles == [(10.0, 10.0), (20.0, 20.0)] and doc.targets == [(14.0, 10.0), (20.0, 25.0)]
    assert np.array_equal(doc.mask, mask_a)
    doc.redo()                                   # the edits made on the drag's image come back too
    assert doc.handles == [(30.0, 30.0)] and doc.mask is None
    doc.push("walk", "walk", latents[2], {"set_id": "sefa-1", "walks": [{"index": 0, "amount": 2.0}]})
    summary = doc.summary()
    assert summary["history"][2]["walk"] == {"set": "sefa-1", "walks": [{"index": 0, "amount": 2.0}]}
    assert summary["mask"] is None
    doc.goto(0)
    assert summary["history"][0].keys() == {"index", "kind", "label"}
    assert mask_from_png(__import__("base64").b64decode(doc.summary()["mask"]), 64).sum() == mask_a.sum()
    back = SessionDocument.from_payload(doc.to_payload())      # kept by the store as well
    back.goto(1)
    assert back.handles == [(30.0, 30.0)] and back.mask is None
    back.goto(0)
    assert back.handles == [(10.0, 10.0), (20.0, 20.0)] and np.array_equal(back.mask, mask_a)


def test_points_and_mask_validation():
    from dragwalk.server.session import validate_points
    assert validate_points([[0, 0]], [[63, 63]], 64, 4) == ([(0.0, 0.0)], [(63.0, 63.0)])
    for handles, targets in [([[0, 0]], []), ([[64.5, 0]], [[1, 1]]), ([[float("nan"), 0]], [[1, 1]]),
                             ([[0, 0]] * 5, [[1, 1]] * 5), ([[0]], [[1, 1]])]:
        with pytest.raises(PointError):
            validate_points(handles, targets, 64, 4)
    mask = np.eye(64, dtype=bool)
    assert np.array_equal(mask_from_png(mask_to_png(mask), 64), mask)
    with pytest.raises(ValueError, match="64x64"):
        mask_from_png(mask_to_png(np.ones((32, 32), bool)), 64)
    with pytest.raises(ValueError, match="PNG"):
        mask_from_png(b"\x89PNG garbage", 64)


def test_sqlite_store_is_wal_and_thread_safe(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    assert isinstance(store, SQLiteStore) and store.journal_mode() == "wal"

    def writer(n):
        for i in range(20):
            store.put(f"session-{n:04d}", "m", bytes([n, i]) * 100)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(store.ids()) == [f"session-{n:04d}" for n in range(4)]
    assert store.get("session-0002") == ("m", bytes([2, 19]) * 100)
    store.delete("session-0002")
    assert store.get("session-0002") is None
    store.close()
    reopened = open_store(str(tmp_path / "s.sqlite3"))
    assert len(reopened.ids()) == 3
    reopened.close()


def test_scheduler_round_robin_cancel_and_close():
    scheduler = Scheduler("test")
    order: list[str] = []
    closed: list[str] = []
    done: dict[str, str] = {}
    gate = threading.Event()

    def steps(name, n):
        try:
            for i in range(n):
                gate.wait()
                order.append(name)
                yield i
        finally:
            closed.append(name)

    jobs = {}

    def on_step(value, name):
        if name == "c" and value == 1:
            jobs["c"].cancel("stopped")      # e.g. stop_drag arriving during c's second step

    for name in "abc":
        jobs[name] = scheduler.submit(steps(name, 6), owner=name,
                                      on_step=lambda v, name=name: on_step(v, name),
                                      on_done=lambda r, e, name=name: done.__setitem__(name, r))
    gate.set()
    for job in jobs.values():
        assert job.finished.wait(5)
    scheduler.shutdown()
    assert order[:6] == ["a", "b", "c", "a", "b", "c"]          # one step each, in turn
    assert order.count("a") == order.count("b") == 6
    assert order.count("c") == 2                                # no step after the cancel
    assert done == {"a": "finished", "b": "finished", "c": "stopped"}
    assert sorted(closed) == ["a", "b", "c"]                    # finally blocks ran in the worker
    assert scheduler.steps_by_owner["a"] == 6


def test_messages_are_strict():
    assert parse_message('{"type": "ack", "seq": 3}').seq == 3
    for raw, code in [('{"type": "ack", "seq": "3"}', "invalid_message"), ("[]", "invalid_message"),
                      ('{"type": "x"}', "invalid_message"), ('{"type": "ping", "more": 1}', "invalid_message"),
                      ('{"type": "hello", "version": 1, "credits": 100}', "invalid_message"),
                      ("x" * 2000, "too_large")]:
        with pytest.raises(MessageError) as info:
            parse_message(raw, limit=1000)
        assert info.value.code == code


def test_settings_flag_wins_over_environment():
    """A flag given on the command line wins, even when it repeats its default (issue 13 item 13:
    ``--host 127.0.0.1`` used to lose to ``DRAGWALK_HOST=0.0.0.0``); an absent flag reads the env."""
    from dragwalk.cli import build_parser

    env = {"DRAGWALK_PORT": "9001", "DRAGWALK_TOKEN": "t", "DRAGWALK_HOST": "0.0.0.0",
           "DRAGWALK_TIMEOUT_HEADER": "3", "DRAGWALK_ALLOW_NO_TOKEN": "1"}
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "8000",
                                      "--max-connections", "7"])
    settings = Settings.from_args(args, env)
    assert settings.host == "127.0.0.1" and settings.port == 8000          # flags equal to defaults
    assert settings.token == "t" and settings.limits.timeout_header == 3.0  # absent flags: env
    assert settings.limits.max_connections == 7 and settings.allow_no_token is True
    bare = build_parser().parse_args(["serve"])
    assert Settings.from_args(bare, env).host == "0.0.0.0" and Settings.from_args(bare, env).port == 9001
    assert Settings.from_args(None, {}).host == "127.0.0.1"
    with pytest.raises(ValueError, match="DRAGWALK_PORT"):
        Settings.from_args(bare, {"DRAGWALK_PORT": "eighty"})


def test_drag_steps_carry_the_runs_reason_distances_and_idle_pairs(generator):
    """The job reports what the DragRun decided (never a "converged" of its own making), one
    distance and one idle flag per pair."""
    from dragwalk.drag import DragConfig, DragRun
    from dragwalk.server.jobs import DragControl, drag_preview, drag_steps

    latent = generator.sample(3)
    handles, targets = [[30.0, 34.0], [20.0, 20.0]], [[30.0, 34.0], [20.0, 20.0]]
    control = DragControl(frame_wanted=lambda: False)
    updates = list(drag_steps(lambda: DragRun(generator, latent, handles, targets, None,
                                              DragConfig(method="warp", max_steps=5)), control))
    assert len(updates) == 1 and updates[0].done and updates[0].step == 0
    assert updates[0].reason == "nothing_to_move" and updates[0].idle == [True, True]
    assert updates[0].distances == [0.0, 0.0] and updates[0].jpeg is not None     # the last step has a frame
    control = DragControl(frame_wanted=lambda: False)
    updates = list(drag_steps(lambda: DragRun(generator, latent, [[30.0, 34.0]], [[36.0, 34.0]], None,
                                              DragConfig(method="draggan", max_steps=2)), control))
    assert [u.reason for u in updates] == [None, "max_steps"] and updates[-1].step == 2
    assert all(len(u.distances) == len(u.idle) == 1 and u.idle == [False] for u in updates)
    # the preview: the warped image before any step, nothing else kept
    preview = drag_preview(lambda: DragRun(generator, latent, [[30.0, 34.0]], [[36.0, 34.0]], None,
                                           DragConfig(method="warp")))
    assert preview.jpeg[:2] == b"\xff\xd8" and preview.idle == [False] and preview.seconds > 0


def test_preview_drag_message_is_validated_like_start_drag():
    msg = parse_message('{"type": "preview_drag", "method": "warp", "params": {"max_steps": 5}, "rid": "p"}')
    assert msg.type == "preview_drag" and msg.method == "warp" and msg.rid == "p"
    with pytest.raises(MessageError):
        parse_message('{"type": "preview_drag", "handles": [[1, 1]]}')
    with pytest.raises(MessageError):
        parse_message('{"type": "preview_drag", "params": {' + ",".join(f'"k{i}": 1' for i in range(40)) + '}}')


def test_edit_log_is_packed_and_reads_back_exactly(doc_parts):
    """Latents in the edit log are deflated float32 bytes in base64 (exact, a fraction of the text of number lists);
    logs written with number lists still open; a packed array that lies about its size is refused."""
    import json as _json

    from dragwalk.latent_io import LatentFileError, latent_from_dict, latent_to_dict, pack_array, unpack_array
    gen, latents = doc_parts
    doc = SessionDocument.create("abcdefgh", gen.name, 64, latents[0], record={"seed": 0})
    for latent in latents[1:]:
        doc.push("reseed", "seed", latent, {"seed": 1})
    log = doc.edit_log()
    packed = len(_json.dumps(log))
    plain = len(_json.dumps([latent_to_dict(e.latent, gen.name) for e in doc.history[1:]]))
    assert packed * 2.5 < plain, (packed, plain)
    copy = SessionDocument.from_edit_log("ijklmnop", log, 64, gen)
    for a, b in zip(copy.history, doc.history):
        assert torch_equal(a.latent.code, b.latent.code)
    assert latent_from_dict(latent_to_dict(latents[1], gen.name), gen).code.equal(latents[1].code.cpu())
    values = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    assert np.array_equal(unpack_array(pack_array(values)), values)
    lying = dict(pack_array(values), shape=[4, 4])
    import base64 as _b64
    import zlib as _zlib
    bomb = {"dtype": "float32", "shape": [4], "zb64": _b64.b64encode(_zlib.compress(b"\0" * 10**6)).decode()}
    plain = {"dtype": "float32", "shape": [3, 4], "b64": _b64.b64encode(values.astype("<f4").tobytes()).decode()}
    assert np.array_equal(unpack_array(plain), values)                      # unpacked bytes read too
    for bad in (lying, bomb, {"dtype": "float64", "shape": [1], "b64": "AAAA"}, dict(pack_array(values), zb64="!!")):
        with pytest.raises(LatentFileError):
            unpack_array(bad)


def torch_equal(a, b) -> bool:
    return bool((a.cpu() == b.cpu()).all())
