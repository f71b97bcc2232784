/**
 * Session panel: model, seed (with random), truncation, latent space, the session's generator
 * settings (class of a conditional model, truncation cutoff, noise mode and seed), photo and file upload.
 */

import { $, h, setOptions, setText } from "../dom.js";
import { randomSeed } from "../app.js";

export function initSessionPanel(app) {
  const form = $("#session-form");
  const model = $("#model");
  const seed = $("#seed");
  const random = $("#seed-random");
  const truncation = $("#truncation");
  const truncationValue = $("#truncation-value");
  const space = $("#space");
  const generate = $("#generate");
  const photo = $("#photo");
  const pti = $("#pti");
  const photoSteps = $("#photo-steps");
  const openFile = $("#open-file");
  const classIndex = $("#class-index");
  const cutoff = $("#cutoff");
  const noiseFields = $("#noise-fields");
  const noiseMode = $("#noise-mode");
  const noiseSeed = $("#noise-seed");
  let shownSession = null;

  const chosenModel = () => app.store.get().models.find((x) => x.name === model.value);
  /** Class and cutoff of a new image (the fields a model does not have are left out). */
  const sampling = () => {
    const m = chosenModel();
    const out = {};
    if (m?.c_dim > 0 && classIndex.value !== "") out.class_index = Number.parseInt(classIndex.value, 10);
    if ((m?.num_ws ?? 1) > 1) out.truncation_cutoff = cutoff.value === "" ? null : Number.parseInt(cutoff.value, 10);
    return out;
  };
  const request = () => ({
    model: model.value || undefined,
    seed: Number.parseInt(seed.value, 10) || 0,
    truncation: Number.parseFloat(truncation.value),
    space: space.value || undefined,
    settings: sampling(),
  });

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!seed.checkValidity()) {
      app.showError("the seed must be a whole number from 0 to 4294967295");
      return;
    }
    if (!cutoff.hidden && !cutoff.checkValidity()) {
      app.showError(`the truncation cutoff must be a whole number from 1 to ${cutoff.max} (or empty: all rows)`);
      return;
    }
    app.newImage(request());
  });
  // a class picked is a new image of the same seed in that class
  classIndex.addEventListener("change", () => {
    if (seed.value !== "" && seed.checkValidity()) app.newImage(request());
  });
  const sendNoise = () => {
    if (!noiseSeed.checkValidity()) {
      app.showError("the noise seed must be a whole number from 0 to 2147483647");
      return;
    }
    app.setNoise({ noise_mode: noiseMode.value, noise_seed: Number.parseInt(noiseSeed.value, 10) || 0 });
  };
  noiseMode.addEventListener("change", sendNoise);
  noiseSeed.addEventListener("change", () => { if (noiseMode.value === "random") sendNoise(); });
  random.addEventListener("click", () => {
    seed.value = String(randomSeed());
    app.newImage(request());
  });
  // moving the truncation shows its image at once (nothing stored); New image keeps it
  truncation.addEventListener("input", () => {
    setText(truncationValue, Number(truncation.value).toFixed(2));
    if (seed.value !== "" && seed.checkValidity()) app.previewSeed(request());
  });
  const recents = $("#recent-sessions");
  recents.addEventListener("click", (e) => {
    const id = e.target.closest("button[data-session]")?.dataset.session;
    if (id) app.switchSession(id);
  });
  model.addEventListener("change", () => fillSpaces(app.store.get()));
  photo.addEventListener("change", () => {
    const steps = photoSteps.value !== "" && photoSteps.checkValidity() ? Number(photoSteps.value) : undefined;
    const file = photo.files?.[0];
    photo.value = "";
    if (file && app.confirmReplace(file.name)) app.uploadPhoto(file, pti.checked, steps);
  });
  openFile.addEventListener("change", () => {
    const file = openFile.files?.[0];
    openFile.value = "";
    if (file && app.confirmReplace(file.name)) app.openFile(file);
  });
  let shownRecents = "";

  function fillSpaces(s) {
    const m = s.models.find((x) => x.name === model.value);
    const spaces = m?.latent_spaces ?? [];
    setOptions(space, spaces.map((v) => ({ value: v, label: v })), s.session?.model === model.value ? s.session.space : m?.default_space);
    space.disabled = spaces.length < 2;
    fillSettings(s, m);
  }

  /** The class picker (conditional models), cutoff (models with w+) and noise controls (models with
   * noise inputs), showing the session's own settings when it is on this model. */
  function fillSettings(s, m) {
    const mine = s.session?.model === model.value ? s.session.settings : null;
    const classes = m?.c_dim ?? 0;
    for (const el of document.querySelectorAll('[data-for-setting="class"]')) el.hidden = classes === 0;
    setOptions(classIndex, Array.from({ length: classes }, (_, i) => ({ value: String(i), label: `class ${i}` })),
      mine?.class_index !== null && mine?.class_index !== undefined ? String(mine.class_index) : "0");
    const rows = m?.num_ws ?? 1;
    for (const el of document.querySelectorAll('[data-for-setting="cutoff"]')) el.hidden = rows <= 1;
    cutoff.max = String(rows);
    if (mine) cutoff.value = mine.truncation_cutoff === null || mine.truncation_cutoff === undefined ? "" : String(mine.truncation_cutoff);
    const modes = m?.noise_modes ?? ["const"];
    noiseFields.hidden = modes.length < 2;
    setOptions(noiseMode, modes.map((v) => ({ value: v, label: v === "const" ? "fixed (model's)" : v })), mine?.noise_mode);
    if (mine) noiseSeed.value = String(mine.noise_seed ?? 0);
    noiseSeed.disabled = noiseMode.value !== "random";
  }

  return (s) => {
    setOptions(model, s.models.map((m) => ({ value: m.name, label: `${m.name} (${m.width && m.width !== m.height ? `${m.width}x${m.height}` : m.resolution}px)` })), s.session?.model);
    const m = s.models.find((x) => x.name === model.value);
    model.title = m?.description ?? "";
    if (s.session && s.session !== shownSession) {
      // Show what the server has, once per new summary (not while the user types).
      if (shownSession?.id !== s.session.id || shownSession?.seed !== s.session.seed) {
        // a photo or an opened file has no seed: leave the field empty rather than show a stale one
        seed.value = s.session.seed !== null && s.session.seed !== undefined ? String(s.session.seed) : "";
        if (typeof s.session.truncation === "number") {
          truncation.value = String(s.session.truncation);
          setText(truncationValue, s.session.truncation.toFixed(2));
        }
      }
      shownSession = s.session;
      fillSpaces(s);
    }
    const live = s.conn.state === "open" || !s.session;
    const busy = !!s.session?.busy;
    generate.disabled = busy || !s.models.length || !live;
    random.disabled = generate.disabled;
    const key = JSON.stringify([s.recents, s.session?.id]);
    if (key !== shownRecents) {
      shownRecents = key;
      const others = (s.recents ?? []).filter((r) => r.id !== s.session?.id);
      recents.replaceChildren(...others.map((r) => h("li", {}, h("button", {
        type: "button", dataset: { session: r.id, testid: "recent-session" },
        title: `session ${r.id} (${r.model}), opened ${new Date(r.time).toLocaleString()}`,
      }, `${r.label} · ${new Date(r.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`))));
      recents.closest("details").hidden = others.length === 0;
    }
    noiseMode.disabled = busy || !s.session || s.session.model !== model.value || !live;
    noiseSeed.disabled = noiseMode.disabled || noiseMode.value !== "random";
    classIndex.disabled = generate.disabled;
    photo.disabled = busy || !s.models.length;
    openFile.disabled = busy || !s.models.length;
  };
}
