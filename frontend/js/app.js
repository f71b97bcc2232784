/**
 * The page controller: owns the store, the connection and the stage, turns
 * server events into state and user actions into protocol messages. Panels
 * only read the state and call these actions.
 */

import { createApi } from "./api.js";
import { createConnection } from "./socket.js";
import { Stage } from "./stage.js";
import { createStore } from "./store.js";
import { throttle } from "./throttle.js";
import { fromServer, toMessage, withTrackedHandles } from "./points.js";
import { downloadFile } from "./download.js";
import { RateMeter } from "./rate.js";
import { installTestHook } from "./testhook.js";
import { TrackedHandles } from "./tracking.js";
import { walkDeltas } from "./walks.js";
import { describeEnd } from "./reasons.js";

const WALK_PREVIEW_MS = 80;

export const initialState = Object.freeze({
  conn: { state: "idle" },
  models: [],
  methods: { drag: [], directions: [] },
  /** the model whose tuned defaults `methods` holds (null: the methods' own defaults) */
  methodsModel: null,
  session: null,
  pairs: [],
  selected: null,
  tool: "points",
  brushRadius: 4,
  maskVisible: true,
  maskPixels: 0,
  drag: {
    running: false, step: null, remaining: null, maxRemaining: null, stepsPerSecond: null, fps: null, reason: null,
    distances: null, idle: null,
  },
  /** the instant warp preview: null, or {shown, idle, seconds} while the page asks for / shows one */
  preview: null,
  directions: null,
  sliders: [],
  committed: [],
  walkKind: "linear",
  computing: false,
  lastFrame: null,
  frameCount: 0,
  framesByKind: {},
  notice: "",
  error: "",
});

export function createApp({ stageRoot }) {
  const api = createApi();
  const store = createStore(initialState);
  const tracked = new TrackedHandles();
  const dragFrames = new RateMeter(2000);
  let syncedAfterConnect = false;
  let lastSentPoints = null;
  let dragRequested = false;
  /** rid of the newest preview_drag; its frames are drawn only while this is set */
  let previewRid = null;
  /** the drag panel's current {method, params}, for previews */
  let dragSettings = () => ({ method: undefined, params: {} });
  let methodsFor = null;

  const stage = new Stage(stageRoot, store, {
    onPointsCommitted: () => actions.commitPoints(),
    onMaskCommitted: () => actions.commitMask(),
  });
  store.subscribe(() => stage.render());

  const connection = createConnection({
    url: () => {
      const id = store.get().session?.id;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      return `${proto}//${location.host}${api.url(`/ws/sessions/${encodeURIComponent(id)}`)}`;
    },
    onEvent: (msg) => handleEvent(msg),
    onFrame: (frame) => handleFrame(frame),
    onStatus: (conn) => {
      if (conn.state === "open") syncedAfterConnect = false;
      store.set({ conn });
      if (conn.state === "failed" && conn.code === 4404) sessionGone();
    },
  });

  /** The session is gone (deleted elsewhere, or the store was reset): carry on with a fresh image. */
  function sessionGone() {
    const gone = store.get().session?.id;
    if (!gone) return;
    store.set({ session: null });
    connection.close();
    showError(`session ${gone} no longer exists on the server; started a new image`);
    actions.newImage({ seed: randomSeed(), truncation: 1 });
  }

  function send(message) {
    const rid = connection.send(message);
    if (rid === null) showError("not connected to the server: the edit was not sent (reconnecting…)");
    return rid;
  }

  function showError(text) {
    store.set({ error: text });
  }

  function notify(text) {
    store.set({ notice: text });
  }

  // ---------------------------------------------------------------- events

  function handleEvent(msg) {
    switch (msg.type) {
      case "state":
        return applySession(msg.session);
      case "progress":
        return msg.op === "drag" ? applyDragProgress(msg) : applyInvertProgress(msg);
      case "done":
        return applyDone(msg);
      case "directions":
        return applyDirections(msg);
      case "preview":
        if (msg.rid === previewRid) store.set({ preview: { ...store.get().preview, idle: msg.idle, seconds: msg.seconds } });
        return undefined;
      case "error":
        // not_found without a rid is about the session itself, not about one of our messages
        if (msg.code === "not_found" && (msg.rid === undefined || msg.rid === null)) return sessionGone();
        if (previewRid !== null && msg.rid === previewRid) {
          // a preview the server could not make is a hint, not a failure of an edit
          previewRid = null;
          store.set({ preview: null });
          return notify(`no preview: ${msg.message || msg.code}`);
        }
        if (dragRequested) {
          dragRequested = false;
          store.set({ drag: { ...store.get().drag, running: store.get().session?.busy === "drag" } });
        }
        store.set({ computing: false });
        return showError(msg.message || msg.code || "the server reported an error");
      default:
        return undefined;
    }
  }

  function applySession(session) {
    if (!session) return;
    const s = store.get();
    const patch = { session };
    if (session.resolution) stage.setResolution(session.resolution);
    if (!stage.drag) patch.pairs = fromServer(session.points, s.pairs);
    lastSentPoints = JSON.stringify(session.points ?? { handles: [], targets: [] });
    // a state sent before our start_drag was handled still says "not busy": do not flicker back to idle
    if (session.busy === "drag") dragRequested = false;
    const running = session.busy === "drag" || dragRequested;
    if (running !== s.drag.running) patch.drag = { ...s.drag, running };
    if (session.busy === "invert") patch.notice = "Inverting the photo…";
    store.set(patch);
    refreshMethods(session.model);
    if (!syncedAfterConnect) {
      syncedAfterConnect = true;
      // After a (re)connect the server is the truth, except for a painted mask it lost.
      if (!session.has_mask && stage.mask && stage.mask.count() > 0) actions.commitMask();
    }
  }

  function applyDragProgress(msg) {
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
        reason: null,
      },
    });
    if (show) showTrackedHandles(show);
  }

  function showTrackedHandles(handles) {
    if (stage.drag) return; // the user is moving a point: do not yank it away
    store.set({ pairs: withTrackedHandles(store.get().pairs, handles) });
  }

  function applyInvertProgress(msg) {
    const psnr = typeof msg.psnr === "number" ? `, PSNR ${msg.psnr.toFixed(1)} dB` : "";
    notify(`Inverting: ${msg.stage ?? ""} ${msg.step ?? ""}/${msg.total ?? "?"}${psnr}`);
  }

  function applyDone(msg) {
    const s = store.get();
    if (msg.op === "drag") {
      dragRequested = false;
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
          remaining,
        },
      });
      // the reason is the server's word for it (the page never concludes "converged" by itself)
      const { title, detail } = describeEnd(msg.reason);
      notify(`Drag ${msg.reason === "error" ? "failed" : "finished"} after ${msg.steps ?? "?"} step${msg.steps === 1 ? "" : "s"} (${title})${detail ? `: ${detail}` : ""}`);
    } else if (msg.op === "invert") {
      notify(msg.reason === "error" ? "The photo could not be inverted" : `Photo inverted (${msg.reason}, ${msg.steps ?? "?"} steps): edit it like any image`);
    } else {
      notify(`${msg.op}: ${msg.reason}`);
    }
  }

  function applyDirections(msg) {
    const n = msg.count ?? msg.labels?.length ?? 0;
    store.set({
      computing: false,
      directions: msg,
      sliders: new Array(n).fill(0),
      committed: new Array(n).fill(0),
    });
    notify(`${msg.count} ${msg.method} directions ready${typeof msg.seconds === "number" ? ` (${msg.seconds.toFixed(2)} s)` : ""}`);
  }

  async function handleFrame(frame) {
    // a preview is drawn only while it is still wanted: a drag or an edit since the request supersedes it
    if (frame.kind === "preview" && (previewRid === null || store.get().drag.running)) return;
    const bitmap = await createImageBitmap(new Blob([frame.image], { type: "image/jpeg" }));
    if (frame.kind === "preview" && (previewRid === null || store.get().drag.running)) {
      bitmap.close?.();
      return;
    }
    stage.drawFrame(bitmap);
    bitmap.close?.();
    const counts = store.get().framesByKind;
    const patch = {
      lastFrame: { seq: frame.seq, step: frame.step, kind: frame.kind },
      frameCount: store.get().frameCount + 1,
      framesByKind: { ...counts, [frame.kind]: (counts[frame.kind] ?? 0) + 1 },
    };
    if (frame.kind === "preview") {
      patch.preview = { ...store.get().preview, shown: true };
      patch.notice = "Preview: where the warp puts the content. Start applies it.";
    } else if (store.get().preview?.shown) {
      patch.preview = null;        // the image shown is the session's again
      previewRid = null;
    }
    if (frame.kind === "drag") patch.drag = { ...store.get().drag, fps: dragFrames.tick(performance.now()) };
    store.set(patch);
    const show = tracked.frame(frame.kind, frame.step);
    if (show) showTrackedHandles(show);
  }

  /** Method defaults tuned for the session's model (asked again whenever the model changes). */
  async function refreshMethods(model) {
    if (!model || model === methodsFor) return;
    methodsFor = model;
    try {
      const methods = await api.methods(model);
      if (methodsFor !== model) return;
      store.set({ methods: { drag: methods?.drag ?? [], directions: methods?.directions ?? [] }, methodsModel: model });
    } catch (err) {
      if (methodsFor === model) methodsFor = null;
      showError(`cannot load the method defaults for ${model}: ${err.message}`);
    }
  }

  /** Whether the drag panel's method moves content at once (so a preview is possible). */
  function warpsNow() {
    const { method } = dragSettings();
    return !!store.get().methods.drag.find((m) => m.name === method)?.warps;
  }

  /** Forget a preview; when one is on the canvas, ask for the session's image again. */
  function dropPreview() {
    const shown = store.get().preview?.shown;
    previewRid = null;
    if (store.get().preview) store.set({ preview: null });
    if (shown && connection.isOpen()) connection.send({ type: "frame" });
  }

  // ---------------------------------------------------------------- sessions

  async function openSession(summary) {
    store.set({
      session: summary,
      directions: null,
      sliders: [],
      committed: [],
      pairs: fromServer(summary.points),
      selected: null,
      drag: { ...initialState.drag },
      maskPixels: 0,
      preview: null,
    });
    previewRid = null;
    refreshMethods(summary.model);
    stage.setResolution(summary.resolution);
    stage.clearMask();
    const url = new URL(location.href);
    url.searchParams.set("session", summary.id);
    url.searchParams.delete("seed");
    history.replaceState(null, "", url);
    try {
      localStorage.setItem("dragwalk.session", summary.id);
    } catch {
      /* private mode: resuming after reload is a convenience only */
    }
    connection.open();
    showStill(summary.id);
  }

  /** Draw the session's PNG until the first websocket frame arrives (also covers a proxy without websockets). */
  async function showStill(id) {
    try {
      const response = await fetch(api.exportUrl(id, "image.png", Date.now()));
      if (!response.ok) return;
      const bitmap = await createImageBitmap(await response.blob());
      if (store.get().session?.id === id && store.get().frameCount === 0) stage.drawFrame(bitmap);
      bitmap.close?.();
    } catch {
      /* the websocket frame will show the image */
    }
  }

  function zeroSliders() {
    const s = store.get();
    if (s.sliders.some((v) => v !== 0) || s.committed.some((v) => v !== 0)) {
      store.set({ sliders: s.sliders.map(() => 0), committed: s.committed.map(() => 0) });
    }
  }

  function walkMessage(commit) {
    const s = store.get();
    const walks = walkDeltas(s.sliders, s.committed);
    return { type: "walk", set: s.directions.set, walks, kind: s.walkKind, commit };
  }

  const sendPreview = throttle(() => {
    if (store.get().directions) connection.send(walkMessage(false));
  }, WALK_PREVIEW_MS);

  // ---------------------------------------------------------------- actions

  const actions = {
    store,
    api,
    stage,
    showError,
    notify,
    clearError: () => store.set({ error: "" }),

    async boot() {
      const [models, methods] = await Promise.allSettled([api.models(), api.methods()]);
      if (models.status === "rejected") {
        store.set({ conn: { state: "failed", reason: models.reason.message } });
        showError(`cannot load the list of models: ${models.reason.message}`);
        return;
      }
      store.set({ models: models.value ?? [] });
      if (methods.status === "fulfilled") {
        store.set({ methods: { drag: methods.value?.drag ?? [], directions: methods.value?.directions ?? [] } });
      } else {
        showError(`cannot load the drag and direction methods: ${methods.reason.message}`);
      }
      const params = new URLSearchParams(location.search);
      let id = params.get("session");
      if (!id && !params.has("seed")) {
        try {
          id = localStorage.getItem("dragwalk.session");
        } catch {
          id = null;
        }
      }
      if (id) {
        try {
          await openSession(await api.getSession(id));
          return;
        } catch (err) {
          // an expired session is worth a word even when it was only remembered (issue 13)
          if (params.get("session") || err.code === "expired") showError(`session ${id} could not be opened (${err.message}); started a new one`);
        }
      }
      const seedParam = Number.parseInt(params.get("seed") ?? "", 10);
      await actions.newImage({
        model: params.get("model") || undefined,
        seed: Number.isFinite(seedParam) ? seedParam : randomSeed(),
        truncation: 1,
      });
    },

    /** New image: a reseed in this session when the model stays, else a new session. */
    async newImage({ model, seed, truncation, space }) {
      const s = store.get();
      if (s.session && (!model || model === s.session.model) && connection.isOpen()) {
        zeroSliders();
        previewRid = null;
        send({ type: "reseed", seed, truncation, ...(space ? { space } : {}) });
        return;
      }
      try {
        const body = { seed, truncation, ...(model ? { model } : {}), ...(space ? { space } : {}) };
        await openSession(await api.createSession(body));
      } catch (err) {
        showError(`could not create a session: ${err.message}`);
      }
    },

    async uploadPhoto(file, pti, steps) {
      notify(`Uploading ${file.name}…`);
      try {
        await openSession(await api.uploadPhoto(file, { model: store.get().session?.model, pti, steps }));
        notify("Photo uploaded: inverting…");
      } catch (err) {
        store.set({ notice: "", error: `photo refused: ${err.message}` });
      }
    },

    async openFile(file) {
      try {
        await openSession(await api.uploadFile(file, store.get().session?.model));
        notify(`Opened ${file.name}`);
      } catch (err) {
        showError(`could not open ${file.name}: ${err.message}`);
      }
    },

    reconnect: () => connection.reconnectNow(),

    /** Download an export; a refusal (no drag yet, no MP4 encoder...) is shown in words, not saved as a file. */
    async download(url, filename) {
      const problem = await downloadFile(url, filename);
      if (problem) showError(`export failed: ${problem}`);
      else notify(`Exported ${filename}`);
    },

    undo() {
      zeroSliders();
      previewRid = null;
      send({ type: "undo" });
    },
    redo() {
      zeroSliders();
      previewRid = null;
      send({ type: "redo" });
    },
    goto(index) {
      zeroSliders();
      previewRid = null;
      send({ type: "goto", index });
    },

    /** The drag panel tells where its current method and settings are read. */
    setDragSettings(read) {
      dragSettings = read;
    },

    /**
     * With a warping method, ask the server what the current points do (one frame, nothing stored);
     * otherwise put the session's own image back if a preview is showing.
     */
    previewDrag() {
      const s = store.get();
      const pairs = toMessage(s.pairs).handles.length;
      if (!warpsNow() || pairs === 0 || s.drag.running || dragRequested || s.session?.busy || !connection.isOpen()) {
        dropPreview();
        return;
      }
      const { method, params } = dragSettings();
      const rid = connection.send({ type: "preview_drag", method, params });
      previewRid = rid;
      store.set({ preview: { ...(s.preview ?? {}), shown: !!s.preview?.shown, idle: null, seconds: null } });
    },

    /** Send the complete pairs when they changed; with `preview`, a warping method previews them. */
    commitPoints(preview = true) {
      const message = toMessage(store.get().pairs);
      const key = JSON.stringify(message);
      if (key === lastSentPoints) return;
      if (store.get().drag.running && message.handles.length === 0) {
        showError("a running drag needs at least one handle and target: press Stop to remove the last one");
        return;
      }
      lastSentPoints = key;
      connection.send({ type: "set_points", ...message });
      // new points: the last drag's verdict and distances were about the old ones
      if (!store.get().drag.running && !dragRequested) store.set({ drag: { ...initialState.drag } });
      if (preview) actions.previewDrag();
    },

    clearPoints() {
      store.set({ pairs: [], selected: null });
      actions.commitPoints();
    },

    commitMask() {
      const mask = stage.mask ? stage.mask.toBase64Png() : null;
      store.set({ maskPixels: stage.mask ? stage.mask.count() : 0 });
      connection.send({ type: "set_mask", mask });
      if (store.get().preview) actions.previewDrag();
    },

    clearMask() {
      stage.clearMask();
      actions.commitMask();
    },

    startDrag(method, params) {
      const s = store.get();
      if (!toMessage(s.pairs).handles.length) {
        showError("add at least one handle and its target before starting a drag");
        return;
      }
      actions.commitPoints(false);
      zeroSliders();
      tracked.reset();
      dragFrames.reset();
      previewRid = null;           // the drag's own frames supersede any preview
      store.set({ drag: { ...initialState.drag, running: true, step: 0 }, error: "", preview: null });
      dragRequested = send({ type: "start_drag", method, params }) !== null;
      if (!dragRequested) store.set({ drag: { ...initialState.drag } });
    },

    stopDrag: () => send({ type: "stop_drag" }),
    setLr: (lr) => connection.send({ type: "set_lr", lr }),

    computeDirections(method, params) {
      store.set({ computing: true });
      if (send({ type: "compute_directions", method, params }) === null) store.set({ computing: false });
    },

    setSlider(index, value, commit) {
      const s = store.get();
      const sliders = s.sliders.slice();
      sliders[index] = value;
      store.set({ sliders });
      if (!commit) {
        sendPreview();
        return;
      }
      sendPreview.cancel();
      previewRid = null;
      const msg = walkMessage(true);
      if (!msg.walks.length) return;
      send(msg);
      store.set({ committed: sliders.slice() });
    },

    resetSliders() {
      const s = store.get();
      sendPreview.cancel();
      store.set({ sliders: s.sliders.map(() => 0) });
      const msg = walkMessage(true);
      if (msg.walks.length) send(msg);
      store.set({ committed: s.sliders.map(() => 0) });
    },

    setWalkKind: (walkKind) => store.set({ walkKind }),
  };

  installTestHook(store, stage);

  return actions;
}

export function randomSeed() {
  return Math.floor(Math.random() * 100000);
}
