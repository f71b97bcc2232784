/**
 * Direction sets and their sliders. Moving a slider previews (throttled); one gesture (a mouse
 * drag, or a run of arrow keys) commits one history entry. Slider positions are read from the
 * history, so undo, redo and jumps move them too; a set found for another image (REDs) is
 * cleared with a note rather than left under a stale name.
 */

import { committedAmounts, setFitsImage, walkDeltas } from "../walks.js";
import { throttle } from "../throttle.js";

const PREVIEW_MS = 80;
/** keys stop for this long: the keyboard gesture is over */
const KEY_GESTURE_MS = 700;

export function createWalkControl(ctx) {
  const { store, connection } = ctx;
  let gesture = false;    // a slider is being moved (its amounts are not committed yet)
  let keyTimer = null;

  function walkMessage(commit) {
    const s = store.get();
    return { type: "walk", set: s.directions.set, walks: walkDeltas(s.sliders, s.committed), kind: s.walkKind, commit };
  }

  const sendPreview = throttle(() => {
    if (store.get().directions) connection.send(walkMessage(false));
  }, PREVIEW_MS);

  function commit() {
    clearTimeout(keyTimer);
    keyTimer = null;
    gesture = false;
    sendPreview.cancel();
    ctx.drag.forgetPreview();
    const s = store.get();
    if (!s.directions) return;
    const msg = walkMessage(true);
    if (!msg.walks.length) return;
    if (ctx.send(msg) !== null) store.set({ committed: s.sliders.slice() });
  }

  const control = {
    compute(method, params) {
      store.set({ computing: { op: "directions", method, elapsed: 0, estimate: null }, directionsNote: "" });
      if (ctx.send({ type: "compute_directions", method, params }) === null) store.set({ computing: null });
    },

    /** Stop waiting for directions (and any other long computation of this session). */
    cancel(op) {
      ctx.send({ type: "cancel", ...(op ? { op } : {}) });
    },

    onDirections(msg) {
      const n = msg.count ?? msg.labels?.length ?? 0;
      const session = store.get().session;
      const directions = { ...msg, entry: session?.cursor ?? 0 };
      const committed = session ? committedAmounts(session.history, session.cursor, msg.set, n) : new Array(n).fill(0);
      store.set({ computing: null, directions, directionsNote: "", sliders: committed.slice(), committed });
      ctx.notify(`${msg.count} ${msg.method} directions ready${typeof msg.seconds === "number" ? ` (${msg.seconds.toFixed(2)} s)` : ""}`);
    },

    onProgress(msg) {
      if (store.get().computing?.op === "directions") {
        store.set({ computing: { ...store.get().computing, elapsed: msg.elapsed, estimate: msg.estimate ?? null } });
      }
    },

    onDone(msg) {
      if (msg.op === "directions" && store.get().computing?.op === "directions") {
        store.set({ computing: null });
        ctx.notify(msg.reason === "cancelled" ? "Finding directions was cancelled" : `directions: ${msg.reason}`);
      }
    },

    /** A state event: sliders follow the history; a set found for another image is cleared. */
    onState(session) {
      const d = store.get().directions;
      if (!d || !session) return {};
      const n = store.get().sliders.length;
      if (d.method === "reds" && !setFitsImage(session.history, session.cursor, d.set, d.entry)) {
        gesture = false;
        sendPreview.cancel();
        return {
          directions: null, sliders: [], committed: [],
          directionsNote: "The REDs sliders were found for another image or region: find them again for this one.",
        };
      }
      if (gesture) return {};
      const committed = committedAmounts(session.history, session.cursor, d.set, n);
      return { committed, sliders: committed.slice() };
    },

    /** A slider moved: preview it (not committed). */
    set(index, value) {
      gesture = true;
      const sliders = store.get().sliders.slice();
      sliders[index] = value;
      store.set({ sliders });
      sendPreview();
    },

    /** The pointer let go of a slider: one history entry for the whole gesture. */
    commit,

    /** A key moved a slider: commit once the keys stop. */
    commitSoon() {
      clearTimeout(keyTimer);
      keyTimer = setTimeout(commit, KEY_GESTURE_MS);
    },

    /** Commit a keyboard gesture still waiting (the slider lost focus). */
    commitPending() {
      if (keyTimer !== null) commit();
    },

    reset() {
      const s = store.get();
      gesture = true;
      store.set({ sliders: s.sliders.map(() => 0) });
      commit();
    },

    setWalkKind: (walkKind) => store.set({ walkKind }),

    /** A new session: its sliders start again. */
    clear() {
      clearTimeout(keyTimer);
      keyTimer = null;
      gesture = false;
      sendPreview.cancel();
    },
  };
  return control;
}
