/**
 * Points and mask between the page and the server, without losing an edit.
 *
 * The page owns the points while the person edits them: every click changes the local pairs at
 * once, and the complete pairs go to the server (at most one `set_points` per 40 ms, always the
 * newest). Until the server's `state` carrying the rid of the newest `set_points` arrives, older
 * states do not overwrite the local pairs (that is how quick clicks used to vanish). The mask
 * follows the same rule; a mask the server changes by itself (undo, redo, a jump in the history)
 * is drawn back into the brush layer.
 */

import { fromServer, toMessage } from "../points.js";
import { throttle } from "../throttle.js";
import { initialState } from "../state.js";

const SEND_MS = 40;

export function createSync(ctx) {
  const { store, stage, connection } = ctx;
  let sentPoints = null;   // JSON of the points the server has (or will have)
  let pointsRid = null;    // newest set_points the server has not confirmed
  let maskRid = null;
  let shownMask;           // the server's mask (base64 PNG or null) the brush layer shows
  let syncedAfterConnect = false;
  let previewWanted = false;

  const sendPoints = throttle(() => {
    const s = store.get();
    const message = toMessage(s.pairs);
    const key = JSON.stringify(message);
    const preview = previewWanted;
    previewWanted = false;
    if (key === sentPoints) return;
    if (s.drag.running && message.handles.length === 0) {
      ctx.showError("a running drag needs at least one handle and target: press Stop to remove the last one");
      return;
    }
    const rid = connection.send({ type: "set_points", ...message });
    if (rid === null) return;      // offline: sent again from the state after reconnecting
    sentPoints = key;
    pointsRid = rid;
    // new points: the last drag's verdict and distances were about the old ones
    if (!s.drag.running && !ctx.drag.requested()) store.set({ drag: { ...initialState.drag } });
    if (preview) ctx.drag.previewDrag();
  }, SEND_MS);

  /** Whether local points are newer than the server's. */
  const pointsAhead = () => pointsRid !== null || sendPoints.pending();

  function adoptServerPoints(session) {
    const points = session?.points ?? { handles: [], targets: [] };
    sentPoints = JSON.stringify({ handles: points.handles, targets: points.targets });
    return fromServer(points, store.get().pairs);
  }

  async function showServerMask(mask) {
    shownMask = mask ?? null;
    if (!stage.mask) return;
    await stage.loadMask(shownMask, store.get().maskMode === "fixed");
    store.set({ maskPixels: stage.mask.count() });
  }

  return {
    /** A `state` event: take the server's points and mask unless the page's own are newer. */
    onState(session, rid) {
      if (rid !== undefined && rid !== null) {
        if (rid === pointsRid) pointsRid = null;
        if (rid === maskRid) {
          maskRid = null;
          shownMask = session.mask ?? null;
        }
      }
      const patch = {};
      if (!stage.drag && !pointsAhead()) patch.pairs = adoptServerPoints(session);
      if (!syncedAfterConnect) {
        syncedAfterConnect = true;
        // after a (re)connect the server is the truth, except for a painted mask it lost
        if (!session.has_mask && stage.mask && stage.mask.count() > 0) {
          this.commitMask();
          return patch;
        }
      }
      const painting = stage.drag?.mode === "paint";
      if (maskRid === null && !painting && (session.mask ?? null) !== shownMask) showServerMask(session.mask);
      return patch;
    },

    /** The connection opened again: whatever was in flight is the server's to say now. */
    onOpen() {
      syncedAfterConnect = false;
      pointsRid = null;
      maskRid = null;
      sendPoints.cancel();
    },

    /** A refused set_points / set_mask: show the server's points or mask again. */
    onError(rid) {
      const session = store.get().session;
      if (rid === pointsRid) {
        pointsRid = null;
        if (!sendPoints.pending()) store.set({ pairs: adoptServerPoints(session) });
        return true;
      }
      if (rid === maskRid) {
        maskRid = null;
        showServerMask(session?.mask);
        return true;
      }
      return false;
    },

    /** Send the complete pairs soon; with `preview`, a warping method previews them. */
    commitPoints(preview = true) {
      previewWanted = previewWanted || preview;
      sendPoints();
    },

    /** Send the points now (before a drag starts). */
    flushPoints() {
      previewWanted = false;
      sendPoints.flush();
    },

    /** Forget what a new session replaced. */
    reset() {
      sendPoints.cancel();
      sentPoints = null;
      pointsRid = null;
      maskRid = null;
      shownMask = null;
    },

    commitMask() {
      const s = store.get();
      const mask = stage.mask ? stage.mask.toBase64Png(s.maskMode === "fixed") : null;
      store.set({ maskPixels: stage.mask ? stage.mask.count() : 0 });
      const rid = connection.send({ type: "set_mask", mask });
      if (rid !== null) maskRid = rid;
      if (store.get().preview) ctx.drag.previewDrag();
    },
  };
}
