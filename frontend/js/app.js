/**
 * The page controller: builds the store, the connection and the stage, hands server events to
 * the controller that owns them (ctl/: session, sync, drag, walks) and gives the panels one
 * object of actions. Panels only read the state and call these actions.
 */

import { createApi } from "./api.js";
import { createConnection } from "./socket.js";
import { Stage } from "./stage.js";
import { createStore } from "./store.js";
import { downloadFile } from "./download.js";
import { installTestHook } from "./testhook.js";
import { initialState, MAX_PAIRS } from "./state.js";
import { createSync } from "./ctl/sync.js";
import { createDragControl } from "./ctl/drag.js";
import { createWalkControl } from "./ctl/walks.js";
import { createSessionControl, randomSeed } from "./ctl/sessions.js";

export { initialState, randomSeed };

export function createApp({ stageRoot }) {
  const api = createApi();
  const store = createStore(initialState);
  const ctx = {
    store,
    api,
    showError: (text) => store.set({ error: text }),
    notify: (text) => store.set({ notice: text }),
  };
  ctx.stage = new Stage(stageRoot, store, {
    onPointsCommitted: () => ctx.sync.commitPoints(),
    onMaskCommitted: () => ctx.sync.commitMask(),
    onPairsFull: () => {
      store.set({ pairsFull: true });
      ctx.showError(`at most ${MAX_PAIRS} handle/target pairs: delete one (right-click or Delete) to add another`);
    },
    maxPairs: MAX_PAIRS,
  });
  store.subscribe(() => ctx.stage.renderSoon());
  let fresh = false;     // the next state is the first since the connection opened
  ctx.connection = createConnection({
    url: () => {
      const id = store.get().session?.id;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      return `${proto}//${location.host}${api.url(`/ws/sessions/${encodeURIComponent(id)}`)}`;
    },
    onEvent: (msg) => handleEvent(msg),
    onFrame: (frame) => handleFrame(frame),
    onStatus: (conn) => {
      if (conn.state === "open") {
        fresh = true;
        ctx.sync.onOpen();
      }
      store.set({ conn });
      if (conn.state === "failed" && conn.code === 4404) ctx.sessions.gone();
    },
  });
  ctx.send = (message) => {
    const rid = ctx.connection.send(message);
    if (rid === null) ctx.showError("not connected to the server: the edit was not sent (reconnecting…)");
    return rid;
  };
  ctx.sync = createSync(ctx);
  ctx.drag = createDragControl(ctx);
  ctx.walks = createWalkControl(ctx);
  ctx.sessions = createSessionControl(ctx);
  const { stage, sync, drag, walks, sessions } = ctx;

  function handleEvent(msg) {
    switch (msg.type) {
      case "state":
        return applySession(msg.session, msg.rid);
      case "progress":
        if (msg.op === "drag") return drag.onProgress(msg);
        if (msg.op === "directions") return walks.onProgress(msg);
        return applyInvertProgress(msg);
      case "done":
        if (msg.op === "drag") return drag.onDone(msg);
        if (msg.op === "directions") return walks.onDone(msg);
        if (msg.op === "invert") {
          store.set({ computing: null });
          return ctx.notify(msg.reason === "error" ? "The photo could not be inverted"
            : msg.reason === "cancelled" ? "Inversion cancelled: the image is where it had got to"
              : `Photo inverted (${msg.reason}, ${msg.steps ?? "?"} steps): edit it like any image`);
        }
        return ctx.notify(`${msg.op}: ${msg.reason}`);
      case "directions":
        return walks.onDirections(msg);
      case "preview":
        return drag.onPreview(msg);
      case "error":
        // not_found without a rid is about the session itself, not about one of our messages
        if (msg.code === "not_found" && (msg.rid === undefined || msg.rid === null)) return sessions.gone();
        if (drag.onError(msg)) return undefined;
        sync.onError(msg.rid);
        if (store.get().computing?.op === "directions") store.set({ computing: null });
        return ctx.showError(msg.message || msg.code || "the server reported an error");
      default:
        return undefined;
    }
  }

  function applySession(session, rid) {
    if (!session) return;
    if (session.resolution) stage.setResolution(session.resolution, session.width ?? session.resolution, session.height ?? session.resolution);
    const first = fresh;
    fresh = false;
    store.set({ session });
    const patch = { ...sync.onState(session, rid), ...drag.onState(session, first), ...walks.onState(session) };
    if (session.busy === "invert" && !store.get().computing) patch.computing = { op: "invert" };
    if (!session.busy && store.get().computing?.op === "invert") patch.computing = null;
    sessions.refreshMethods(session.model);
    store.set(patch);
  }

  function applyInvertProgress(msg) {
    const psnr = typeof msg.psnr === "number" ? `, PSNR ${msg.psnr.toFixed(1)} dB` : "";
    const was = store.get().computing;
    // time left at the pace so far, per stage (projection, then pivotal tuning)
    const since = was?.op === "invert" && was.stage === msg.stage && was.since ? was.since : performance.now();
    const perStep = msg.step > 1 ? (performance.now() - since) / 1000 / (msg.step - 1) : null;
    const left = perStep !== null && msg.total > msg.step ? ` · about ${Math.ceil(perStep * (msg.total - msg.step))} s left` : "";
    store.set({ computing: { op: "invert", step: msg.step, total: msg.total, stage: msg.stage, since } });
    ctx.notify(`Inverting: ${msg.stage ?? ""} ${msg.step ?? ""}/${msg.total ?? "?"}${psnr}${left}`);
  }

  async function handleFrame(frame) {
    // a preview is drawn only while it is still wanted: a drag or an edit since the request supersedes it
    const unwanted = () => frame.kind === "preview" && (drag.previewRid() === null || store.get().drag.running);
    if (unwanted()) return;
    const bitmap = await createImageBitmap(new Blob([frame.image], { type: "image/jpeg" }));
    if (unwanted()) {
      bitmap.close?.();
      return;
    }
    stage.drawFrame(bitmap);
    bitmap.close?.();
    const s = store.get();
    const patch = {
      lastFrame: { seq: frame.seq, step: frame.step, kind: frame.kind, at: performance.now() },
      frameCount: s.frameCount + 1,
      framesByKind: { ...s.framesByKind, [frame.kind]: (s.framesByKind[frame.kind] ?? 0) + 1 },
    };
    if (frame.kind === "preview") {
      patch.preview = { ...s.preview, shown: true };
      patch.notice = "Preview: where the warp puts the content. Start applies it.";
    } else if (s.preview?.shown) {
      patch.preview = null;        // the image shown is the session's again
      drag.forgetPreview();
    }
    const after = drag.onFrame(frame, patch);
    store.set(patch);
    after();
  }

  const actions = {
    store,
    api,
    stage,
    showError: ctx.showError,
    notify: ctx.notify,
    clearError: () => store.set({ error: "" }),
    boot: () => sessions.boot(),
    newImage: (request) => sessions.newImage(request),
    uploadPhoto: (file, pti, steps) => sessions.uploadPhoto(file, pti, steps),
    openFile: (file) => sessions.openFile(file),
    switchSession: (id) => sessions.switchTo(id),
    previewSeed: (request) => sessions.previewSeed(request),
    setNoise: (noise) => sessions.setNoise(noise),
    /**
     * Opening a photo, latent or log starts another session: say so first when this one has
     * edits (it stays reachable under Recent sessions and with Back).
     */
    confirmReplace(name) {
      const history = store.get().session?.history ?? [];
      return history.length <= 1
        || window.confirm(`Open ${name} as a new session? The image you are editing stays under Recent sessions (and Back returns to it).`);
    },
    reconnect: () => ctx.connection.reconnectNow(),

    /** Download an export; a refusal (no drag yet, no MP4 encoder...) is shown in words, not saved as a file. */
    async download(url, filename) {
      const problem = await downloadFile(url, filename);
      if (problem) ctx.showError(`export failed: ${problem}`);
      else ctx.notify(`Exported ${filename}`);
    },

    undo: () => sessions.undo(),
    redo: () => sessions.redo(),
    goto: (index) => sessions.goto(index),

    setDragSettings: (read) => drag.setSettings(read),
    previewDrag: () => drag.previewDrag(),
    startDrag: (method, params) => drag.start(method, params),
    stopDrag: () => drag.stop(),
    setLr: (lr) => drag.setLr(lr),
    /** Cancel the session's long computation (a drag, an inversion, directions being found). */
    cancel: (op) => walks.cancel(op),

    clearPoints() {
      store.set({ pairs: [], selected: null, pairsFull: false });
      sync.commitPoints();
    },
    clearMask() {
      stage.clearMask();
      sync.commitMask();
    },
    setMaskMode(maskMode) {
      if (maskMode === store.get().maskMode) return;
      store.set({ maskMode });
      if (stage.mask && stage.mask.count() > 0) sync.commitMask();
    },

    computeDirections: (method, params) => walks.compute(method, params),
    setSlider: (index, value) => walks.set(index, value),
    commitSliders: () => walks.commit(),
    commitSlidersSoon: () => walks.commitSoon(),
    commitSlidersPending: () => walks.commitPending(),
    resetSliders: () => walks.reset(),
    setWalkKind: (kind) => walks.setWalkKind(kind),
  };

  installTestHook(store, stage);
  return actions;
}
