/**
 * Drags as the page sees them: start, stop, learning rate, the warp's instant preview, and the
 * server's progress and verdict (each pair's distance, whether its content arrived, why it ended).
 */

import { toMessage, withTrackedHandles } from "../points.js";
import { RateMeter } from "../rate.js";
import { TrackedHandles } from "../tracking.js";
import { describeEnd } from "../reasons.js";
import { throttle } from "../throttle.js";
import { initialState } from "../state.js";

const PREVIEW_MS = 120;

export function createDragControl(ctx) {
  const { store, stage, connection } = ctx;
  const tracked = new TrackedHandles();
  const frames = new RateMeter(2000);
  let requested = false;
  /** rid of the newest preview_drag; its frames are drawn only while this is set */
  let previewRid = null;
  /** the drag panel's current {method, params}, for previews */
  let settings = () => ({ method: undefined, params: {} });

  function showTrackedHandles(handles) {
    if (stage.drag) return; // the person is moving a point: do not yank it away
    store.set({ pairs: withTrackedHandles(store.get().pairs, handles) });
  }

  function warpsNow() {
    const { method } = settings();
    return !!store.get().methods.drag.find((m) => m.name === method)?.warps;
  }

  const askPreview = throttle(() => {
    const s = store.get();
    if (!warpsNow() || !toMessage(s.pairs).handles.length || s.drag.running || requested || s.session?.busy
        || !connection.isOpen()) {
      control.dropPreview();
      return;
    }
    const { method, params } = settings();
    previewRid = connection.send({ type: "preview_drag", method, params });
    store.set({ preview: { ...(s.preview ?? {}), shown: !!s.preview?.shown, idle: null, seconds: null } });
  }, PREVIEW_MS);

  const control = {
    requested: () => requested,
    previewRid: () => previewRid,
    setSettings(read) {
      settings = read;
    },

    /** With a warping method, ask the server what the current points do (one frame, nothing stored). */
    previewDrag: () => askPreview(),

    /** Forget a preview; when one is on the canvas, ask for the session's image again. */
    dropPreview() {
      askPreview.cancel();
      const shown = store.get().preview?.shown;
      previewRid = null;
      if (store.get().preview) store.set({ preview: null });
      if (shown && connection.isOpen()) connection.send({ type: "frame" });
    },

    /** Any edit of the history supersedes a preview still on its way. */
    forgetPreview() {
      askPreview.cancel();
      previewRid = null;
    },

    start(method, params) {
      if (!toMessage(store.get().pairs).handles.length) {
        ctx.showError("add at least one handle and its target before starting a drag");
        return;
      }
      ctx.sync.flushPoints();
      tracked.reset();
      frames.reset();
      control.forgetPreview();
      store.set({ drag: { ...initialState.drag, running: true, step: 0 }, error: "", preview: null });
      requested = ctx.send({ type: "start_drag", method, params }) !== null;
      if (!requested) store.set({ drag: { ...initialState.drag } });
    },

    stop: () => ctx.send({ type: "stop_drag" }),
    setLr: (lr) => connection.send({ type: "set_lr", lr }),

    onProgress(msg) {
      const s = store.get();
      const show = tracked.progress(msg.step, msg.handles ?? []);
      store.set({
        drag: {
          ...s.drag,
          running: true,
          step: msg.step,
          remaining: msg.remaining,
          maxRemaining: msg.max_remaining,
          stepsPerSecond: msg.steps_per_second,
          distances: Array.isArray(msg.distances) ? msg.distances : s.drag.distances,
          idle: Array.isArray(msg.idle) ? msg.idle : s.drag.idle,
          unsure: null,
          reason: null,
        },
      });
      if (show) showTrackedHandles(show);
    },

    onDone(msg) {
      const s = store.get();
      requested = false;
      const distances = Array.isArray(msg.distances) ? msg.distances : s.drag.distances;
      const remaining = distances?.length ? distances.reduce((a, b) => a + b, 0) / distances.length : s.drag.remaining;
      store.set({
        drag: {
          ...s.drag,
          running: false,
          reason: msg.reason,
          step: msg.steps ?? s.drag.step,
          distances,
          idle: Array.isArray(msg.idle) ? msg.idle : s.drag.idle,
          unsure: Array.isArray(msg.unsure) ? msg.unsure : null,
          remaining,
        },
      });
      // the reason is the server's word for it (the page never concludes "converged" by itself)
      const { title, detail } = describeEnd(msg.reason);
      ctx.notify(`Drag ${msg.reason === "error" ? "failed" : "finished"} after ${msg.steps ?? "?"} step${msg.steps === 1 ? "" : "s"} (${title})${detail ? `: ${detail}` : ""}`);
    },

    onPreview(msg) {
      if (msg.rid === previewRid) store.set({ preview: { ...store.get().preview, idle: msg.idle, seconds: msg.seconds } });
    },

    /** A refused command: true when it was about a drag or a preview (handled here). */
    onError(msg) {
      if (previewRid !== null && msg.rid === previewRid) {
        // a preview the server could not make is a hint, not a failure of an edit
        previewRid = null;
        store.set({ preview: null });
        ctx.notify(`no preview: ${msg.message || msg.code}`);
        return true;
      }
      if (requested) {
        requested = false;
        store.set({ drag: { ...store.get().drag, running: store.get().session?.busy === "drag" } });
      }
      return false;
    },

    /** A state event: a drag the page thought running but the server does not (missed done). */
    onState(session, fresh) {
      const drag = store.get().drag;
      if (fresh && drag.running && session.busy !== "drag") {
        requested = false;
        return { drag: { ...drag, running: false, reason: drag.reason ?? "cancelled" } };
      }
      return {};
    },

    /** A frame was drawn: drag frames set the rate and show their step's tracked handles. */
    onFrame(frame, patch) {
      if (frame.kind === "drag") patch.drag = { ...store.get().drag, fps: frames.tick(performance.now()) };
      return () => {
        const show = tracked.frame(frame.kind, frame.step);
        if (show) showTrackedHandles(show);
      };
    },
  };
  return control;
}
