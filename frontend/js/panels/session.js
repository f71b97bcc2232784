/** Session panel: model, seed (with random), truncation, latent space, photo and file upload. */

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
  let shownSession = null;

  const request = () => ({
    model: model.value || undefined,
    seed: Number.parseInt(seed.value, 10) || 0,
    truncation: Number.parseFloat(truncation.value),
    space: space.value || undefined,
  });

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!seed.checkValidity()) {
      app.showError("the seed must be a whole number from 0 to 4294967295");
      return;
    }
    app.newImage(request());
  });
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
  }

  return (s) => {
    setOptions(model, s.models.map((m) => ({ value: m.name, label: `${m.name} (${m.resolution}px)` })), s.session?.model);
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
    photo.disabled = busy || !s.models.length;
    openFile.disabled = busy || !s.models.length;
  };
}
