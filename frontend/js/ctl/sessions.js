/**
 * Which session the page edits: start (or resume) one, open a photo, latent or edit log, follow
 * the browser's Back and Forward between sessions, keep a list of recent ones, and move along a
 * session's history (undo, redo, jump).
 */

import { fromServer } from "../points.js";
import { initialState } from "../state.js";
import { addRecent, readRecents } from "../recents.js";
import { throttle } from "../throttle.js";

const PRECOMPUTE_POLL_MS = 3000;

export function randomSeed() {
  return Math.floor(Math.random() * 100000);
}

export function createSessionControl(ctx) {
  const { store, api, stage, connection } = ctx;
  let methodsFor = null;

  /** Follow the server's background search for direction sets until it has finished. */
  async function watchPrecompute() {
    try {
      const ready = await api.directionsReady();
      store.set({ precompute: ready });
      if (ready?.enabled && ready.running) setTimeout(watchPrecompute, PRECOMPUTE_POLL_MS);
    } catch {
      store.set({ precompute: null });     // an older server, or none: nothing to show
    }
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
      ctx.showError(`cannot load the method defaults for ${model}: ${err.message}`);
    }
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

  /** Make `summary` the session the page edits. `push`: a new browser history entry (Back returns). */
  async function open(summary, { push = true } = {}) {
    const previous = store.get().session?.id;
    ctx.sync.reset();
    ctx.walks.clear();
    ctx.drag.forgetPreview();
    store.set({
      session: summary,
      directions: null,
      directionsNote: "",
      sliders: [],
      committed: [],
      pairs: fromServer(summary.points),
      selected: null,
      pairsFull: false,
      drag: { ...initialState.drag },
      maskPixels: 0,
      preview: null,
      computing: null,
      recents: addRecent(summary),
    });
    refreshMethods(summary.model);
    stage.setResolution(summary.resolution, summary.width ?? summary.resolution, summary.height ?? summary.resolution);
    stage.clearMask();
    const url = new URL(location.href);
    url.searchParams.set("session", summary.id);
    url.searchParams.delete("seed");
    if (push && previous && previous !== summary.id) history.pushState({ session: summary.id }, "", url);
    else history.replaceState({ session: summary.id }, "", url);
    try {
      localStorage.setItem("dragwalk.session", summary.id);
    } catch {
      /* private mode: resuming after reload is a convenience only */
    }
    connection.open();
    showStill(summary.id);
  }

  const control = {
    open,
    refreshMethods,

    async boot() {
      store.set({ recents: readRecents() });
      api.health().then((h) => store.set({ exports: h?.exports ?? {} }), () => {});
      watchPrecompute();
      const [models, methods] = await Promise.allSettled([api.models(), api.methods()]);
      if (models.status === "rejected") {
        store.set({ conn: { state: "failed", reason: models.reason.message } });
        ctx.showError(`cannot load the list of models: ${models.reason.message}`);
        return;
      }
      store.set({ models: models.value ?? [] });
      if (methods.status === "fulfilled") {
        store.set({ methods: { drag: methods.value?.drag ?? [], directions: methods.value?.directions ?? [] } });
      } else {
        ctx.showError(`cannot load the drag and direction methods: ${methods.reason.message}`);
      }
      // Back and Forward move between the sessions this tab opened
      window.addEventListener("popstate", (e) => {
        const id = e.state?.session ?? new URLSearchParams(location.search).get("session");
        if (id && id !== store.get().session?.id) control.switchTo(id, false);
      });
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
          await open(await api.getSession(id), { push: false });
          return;
        } catch (err) {
          // an expired session is worth a word even when it was only remembered (issue 13)
          if (params.get("session") || err.code === "expired") ctx.showError(`session ${id} could not be opened (${err.message}); started a new one`);
        }
      }
      const seedParam = Number.parseInt(params.get("seed") ?? "", 10);
      await control.newImage({
        model: params.get("model") || undefined,
        seed: Number.isFinite(seedParam) ? seedParam : randomSeed(),
        truncation: 1,
      });
    },

    /** Open another stored session (the recent list, Back/Forward). */
    async switchTo(id, push = true) {
      try {
        await open(await api.getSession(id), { push });
        ctx.notify(`Opened session ${id}`);
      } catch (err) {
        ctx.showError(`session ${id} could not be opened: ${err.message}`);
      }
    },

    /** The session is gone (deleted elsewhere, or the store was reset): carry on with a fresh image. */
    gone() {
      const id = store.get().session?.id;
      if (!id) return;
      store.set({ session: null });
      connection.close();
      ctx.showError(`session ${id} no longer exists on the server; started a new image`);
      control.newImage({ seed: randomSeed(), truncation: 1 });
    },

    /** New image: a reseed in this session when the model stays, else a new session. */
    async newImage({ model, seed, truncation, space, settings }) {
      const s = store.get();
      const chosen = settings && Object.keys(settings).length ? { settings } : {};
      if (s.session && (!model || model === s.session.model) && connection.isOpen()) {
        ctx.drag.forgetPreview();
        ctx.send({ type: "reseed", seed, truncation, ...(space ? { space } : {}), ...chosen });
        return;
      }
      try {
        const body = { seed, truncation, ...(model ? { model } : {}), ...(space ? { space } : {}), ...chosen };
        await open(await api.createSession(body));
      } catch (err) {
        ctx.showError(`could not create a session: ${err.message}`);
      }
    },

    /** The image a seed and truncation give, shown at once and not stored (a slider being moved). */
    previewSeed: throttle(({ seed, truncation, space, settings }) => {
      if (connection.isOpen() && store.get().session) {
        const chosen = settings && Object.keys(settings).length ? { settings } : {};
        connection.send({ type: "reseed", seed, truncation, preview: true, ...(space ? { space } : {}), ...chosen });
      }
    }, 80),

    /** Render the session's image with another noise mode (a history entry: undo puts it back). */
    setNoise({ noise_mode, noise_seed }) {
      if (connection.isOpen() && store.get().session) {
        ctx.drag.forgetPreview();
        ctx.send({ type: "set_noise", noise_mode, noise_seed });
      }
    },

    async uploadPhoto(file, pti, steps) {
      ctx.notify(`Uploading ${file.name}…`);
      try {
        await open(await api.uploadPhoto(file, { model: store.get().session?.model, pti, steps }));
        ctx.notify("Photo uploaded: inverting…");
      } catch (err) {
        store.set({ notice: "", error: `photo refused: ${err.message}` });
      }
    },

    async openFile(file) {
      try {
        await open(await api.uploadFile(file, store.get().session?.model));
        ctx.notify(`Opened ${file.name}`);
      } catch (err) {
        ctx.showError(`could not open ${file.name}: ${err.message}`);
      }
    },

    undo: () => control.move({ type: "undo" }),
    redo: () => control.move({ type: "redo" }),
    goto: (index) => control.move({ type: "goto", index }),

    move(message) {
      ctx.walks.commitPending();
      ctx.drag.forgetPreview();
      ctx.send(message);
    },
  };
  return control;
}
