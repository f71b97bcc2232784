// Unit tests of the page's pure helpers (run by tests/test_browser_js.py with `node --test`).
import { test } from "node:test";
import assert from "node:assert/strict";

import { backoffDelay } from "../../frontend/js/backoff.js";
import { buildFrame, parseFrame } from "../../frontend/js/frames.js";
import { pickPoint, toModel, toScreen } from "../../frontend/js/geometry.js";
import { alphaToBinary, strokePoints } from "../../frontend/js/mask.js";
import { addPoint, deletePair, fromServer, maxRemaining, movePoint, toMessage, withTrackedHandles } from "../../frontend/js/points.js";
import { throttle } from "../../frontend/js/throttle.js";
import { withToken } from "../../frontend/js/api.js";
import { describeEnd, dragStatus, pairLines } from "../../frontend/js/reasons.js";
import { TrackedHandles } from "../../frontend/js/tracking.js";

test("a late frame of an older step does not move the markers back", () => {
  const tracked = new TrackedHandles();
  assert.equal(tracked.progress(0, [[30.25, 33.75]]), null);    // an in-between warp frame's step
  assert.deepEqual(tracked.frame("drag", 0), [[30.25, 33.75]]);  // drawn while it is the newest
  assert.equal(tracked.progress(1, [[29.8, 34.2]]), null);
  assert.equal(tracked.frame("drag", 0), null);                  // drawn late: ignored
  assert.deepEqual(tracked.frame("drag", 1), [[29.8, 34.2]]);
  tracked.reset();
  assert.equal(tracked.progress(0, [[1, 1]]), null);
  assert.deepEqual(tracked.frame("drag", 0), [[1, 1]]);
});

test("frame header round trip, big-endian seq and step", () => {
  const image = new Uint8Array([0xff, 0xd8, 0xff]);
  const buf = buildFrame({ kindCode: 1, seq: 0x01020304, step: 77 }, image);
  const bytes = new Uint8Array(buf);
  assert.deepEqual([...bytes.slice(0, 12)], [0x44, 0x57, 1, 1, 1, 2, 3, 4, 0, 0, 0, 77]);
  const f = parseFrame(buf);
  assert.equal(f.kind, "drag");
  assert.equal(f.seq, 0x01020304);
  assert.equal(f.step, 77);
  assert.deepEqual([...f.image], [...image]);
});

test("frames without magic or too short are refused", () => {
  assert.throws(() => parseFrame(new ArrayBuffer(5)), /too short/);
  const buf = buildFrame({ seq: 1 });
  new Uint8Array(buf)[0] = 0;
  assert.throws(() => parseFrame(buf), /magic/);
});

test("screen <-> model mapping puts pixel centres on integers and clamps", () => {
  // 64 px model shown at 512 CSS px: pixel 10 spans 80..88, centre 84.
  assert.deepEqual(toModel(84, 84, 512, 512, 64), [10, 10]);
  assert.deepEqual(toScreen(10, 10, 512, 512, 64), [84, 84]);
  assert.deepEqual(toModel(-20, 1000, 512, 512, 64), [0, 63]);
  const [x, y] = toModel(123.4, 300.2, 512, 512, 64);
  const [sx, sy] = toScreen(x, y, 512, 512, 64);
  assert.ok(Math.abs(sx - 123.4) < 0.1 && Math.abs(sy - 300.2) < 0.1);
});

test("non-square models map each axis by its own size", () => {
  // a 16 x 32 (width x height) portrait shown at 256 x 512 CSS px: 16 CSS px per model pixel
  assert.deepEqual(toModel(8, 8, 256, 512, [16, 32]), [0, 0]);
  assert.deepEqual(toModel(248, 504, 256, 512, [16, 32]), [15, 31]);
  assert.deepEqual(toModel(1000, 1000, 256, 512, [16, 32]), [15, 31]);       // clamped per axis
  assert.deepEqual(toScreen(15, 31, 256, 512, [16, 32]), [248, 504]);
  assert.deepEqual(toModel(120, 200, 256, 512, [16, 32]), [7, 12]);
});

test("points: add handle then target, move, delete, message only complete pairs", () => {
  let { pairs, selected } = addPoint([], [10, 20]);
  assert.deepEqual(selected, { index: 0, role: "handle" });
  assert.deepEqual(toMessage(pairs), { handles: [], targets: [] });
  ({ pairs, selected } = addPoint(pairs, [30, 20]));
  assert.deepEqual(selected, { index: 0, role: "target" });
  ({ pairs } = addPoint(pairs, [5, 5]));
  assert.deepEqual(toMessage(pairs), { handles: [[10, 20]], targets: [[30, 20]] });
  pairs = movePoint(pairs, { index: 0, role: "target" }, [12, 20]);
  assert.equal(maxRemaining(pairs), 2);
  assert.deepEqual(pickPoint(pairs, [12.5, 20], 1), { index: 0, role: "target" });
  assert.equal(pickPoint(pairs, [40, 40], 1), null);
  pairs = deletePair(pairs, 0);
  assert.equal(pairs.length, 1);
  assert.equal(pairs[0].target, null);
});

test("server points replace complete pairs, keep a half-placed one, tracked handles move", () => {
  const local = [{ handle: [1, 1], target: [2, 2] }, { handle: [9, 9], target: null }];
  const pairs = fromServer({ handles: [[3, 3]], targets: [[4, 4]] }, local);
  assert.deepEqual(pairs, [{ handle: [3, 3], target: [4, 4] }, { handle: [9, 9], target: null }]);
  const tracked = withTrackedHandles(pairs, [[3.5, 3.5]]);
  assert.deepEqual(tracked[0].handle, [3.5, 3.5]);
  assert.deepEqual(tracked[1], pairs[1]);
});

test("backoff grows exponentially up to the cap", () => {
  const noJitter = { jitter: 0 };
  assert.deepEqual([0, 1, 2, 3].map((a) => backoffDelay(a, noJitter)), [500, 1000, 2000, 4000]);
  assert.equal(backoffDelay(20, noJitter), 10000);
  const d = backoffDelay(2, { random: () => 1 });
  assert.ok(d > 2000 && d <= 2400);
});

test("throttle sends at most once per interval and always the last value", () => {
  let now = 0;
  const timers = [];
  const clock = { now: () => now, setTimer: (cb, ms) => timers.push({ cb, at: now + ms }) - 1, clearTimer: () => {} };
  const calls = [];
  const t = throttle((v) => calls.push(v), 100, clock);
  t(1); // immediate
  t(2);
  t(3); // replaces 2
  assert.deepEqual(calls, [1]);
  now = 100;
  timers.shift().cb();
  assert.deepEqual(calls, [1, 3]);
});

test("mask alpha threshold and gap-free strokes", () => {
  const rgba = new Uint8ClampedArray([0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 100]);
  assert.deepEqual([...alphaToBinary(rgba)], [0, 1, 0]);
  const pts = strokePoints([0, 0], [10, 0], 2);
  assert.equal(pts.length, 5);
  assert.deepEqual(pts.at(-1), [10, 0]);
});

test("token goes into the query of export and websocket URLs", () => {
  assert.equal(withToken("/api/x", "s3cret", { v: 2 }), "/api/x?v=2&token=s3cret");
  assert.equal(withToken("/api/x", ""), "/api/x");
});

test("handles follow the frame of their own step, in either arrival order", async () => {
  const { TrackedHandles } = await import("../../frontend/js/tracking.js");
  const t = new TrackedHandles(4);
  assert.equal(t.progress(1, [[1, 1]]), null); // frame 1 not drawn yet
  assert.deepEqual(t.frame("drag", 1), [[1, 1]]); // now it is: show step 1's handles
  assert.equal(t.frame("drag", 2), null); // frame 2 before its progress
  assert.deepEqual(t.progress(2, [[2, 2]]), [[2, 2]]);
  assert.equal(t.progress(3, [[3, 3]]), null); // its frame was skipped (credits): keep showing step 2
  assert.equal(t.frame("state", 0), null);
  for (let i = 4; i < 10; i++) t.progress(i, [[i, i]]);
  assert.equal(t.frame("drag", 1), null, "old steps are forgotten");
});

test("sliders send only what is not yet committed", async () => {
  const { walkDeltas } = await import("../../frontend/js/walks.js");
  assert.deepEqual(walkDeltas([1.5, 0, -2], [1.5, 0, 0]), [{ index: 2, amount: -2 }]);
  assert.deepEqual(walkDeltas([0, 0], [2, 0]), [{ index: 0, amount: -2 }]);
  assert.deepEqual(walkDeltas([0.1 + 0.2], [0.3]), []);
});

test("rate meter counts events per second over its window", async () => {
  const { RateMeter } = await import("../../frontend/js/rate.js");
  const m = new RateMeter(1000);
  assert.equal(m.tick(0), null);
  assert.equal(m.tick(250), null, "two events are not a rate yet");
  assert.equal(m.tick(500), 4);
  assert.equal(m.tick(1000), 3);
  assert.equal(m.tick(3000), null, "events older than the window are dropped");
  const burst = new RateMeter(2000);
  for (let t = 0; t < 4; t++) assert.equal(burst.tick(1000 + t * 0.6), null, "a burst of frames is not 1666 frames/s");
});

test("a new pair past the limit is refused, never dropped silently", () => {
  let pairs = [];
  for (let i = 0; i < 4; i++) pairs = addPoint(pairs, [i, i], 2).pairs;
  assert.equal(pairs.length, 2);
  const refused = addPoint(pairs, [9, 9], 2);
  assert.equal(refused.refused, true);
  assert.equal(refused.pairs, pairs);
  const half = addPoint([{ handle: [1, 1], target: null }], [2, 2], 1);
  assert.ok(!half.refused && half.pairs[0].target, "completing the last pair is never refused");
});

test("sliders read their committed amounts from the history", async () => {
  const { committedAmounts, setFitsImage } = await import("../../frontend/js/walks.js");
  const walk = (set, index, amount) => ({ kind: "walk", walk: { set, walks: [{ index, amount }] } });
  const history = [{ kind: "start" }, walk("a", 0, 2), { kind: "drag" }, walk("a", 1, 1.5), walk("b", 0, 3),
    walk("a", 1, -0.5), walk("a", 0, 4.8)];
  assert.deepEqual(committedAmounts(history, 6, "a", 3), [4.8, 1, 0]);
  assert.deepEqual(committedAmounts(history, 5, "a", 3), [0, 1, 0], "undo takes the last walk back");
  assert.deepEqual(committedAmounts(history, 2, "a", 3), [0, 0, 0], "a drag starts a new base");
  assert.deepEqual(committedAmounts(history, 1, "a", 3), [2, 0, 0]);
  assert.equal(setFitsImage(history, 3, "a", 2), true);
  assert.equal(setFitsImage(history, 4, "a", 2), false, "another set's walk: another image");
  assert.equal(setFitsImage(history, 1, "a", 2), false, "an undo before the set was found");
});

test("drag end reasons are explained, and only 'converged' says converged", () => {
  const reasons = ["converged", "nothing_to_move", "tracking_lost", "max_steps", "stopped", "cancelled", "error"];
  for (const reason of reasons) {
    const { title, detail } = describeEnd(reason);
    assert.ok(title && detail, reason);
    const text = dragStatus({ running: false, reason });
    assert.equal(/converged/.test(text), reason === "converged", text);
  }
  assert.match(dragStatus({ running: false, reason: "tracking_lost" }), /content did not follow.*Warp method or a mask/);
  assert.equal(dragStatus({ running: true, reason: null }), "dragging…");
  assert.equal(dragStatus({ running: false, reason: null }), "idle");
  assert.equal(describeEnd("something_new").title, "something_new");
});

test("per-pair distances, with pairs that had nothing to move marked", () => {
  assert.deepEqual(pairLines([3.14159, 0, 12], [false, true, false]), ["1: 3.1 px", "2: nothing to move", "3: 12.0 px"]);
  assert.deepEqual(pairLines(null, null), []);
  assert.deepEqual(pairLines([NaN], null), ["1: – px"]);
});
