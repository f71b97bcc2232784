/**
 * Directions panel: pick a method, set its parameters (and a layer range on
 * StyleGAN models), find directions (with elapsed time, an estimate and Cancel),
 * then one slider per direction. Moving a slider previews (throttled); one gesture
 * (releasing the pointer, or the arrow keys stopping) commits one history entry.
 */

import { $, h, setOptions, setText } from "../dom.js";

const SLIDER_RANGE = 5;
const HIDDEN_PARAMS = new Set(["layers", "mask", "latent"]);

export function initDirectionsPanel(app) {
  const method = $("#dir-method");
  const paramsBox = $("#dir-params");
  const advanced = $("#dir-advanced");
  const layersRow = $("#dir-layers");
  const layerStart = $("#dir-layer-start");
  const layerEnd = $("#dir-layer-end");
  const walkKind = $("#walk-kind");
  const compute = $("#dir-compute");
  const reset = $("#dir-reset");
  const note = $("#dir-note");
  const slidersBox = $("#sliders");
  const cancel = $("#dir-cancel");
  const progress = $("#dir-progress");
  const setTitle = $("#sliders-title");
  let paramsFor = null;
  let slidersFor = null;
  let stripsFor = "";
  let stripUrl = () => "";
  // a strip is asked for only when its slider is on screen (and again when the image changes)
  const stripsSeen = new IntersectionObserver((seen) => {
    for (const e of seen) if (e.isIntersecting) showStrip(e.target);
  });
  function showStrip(img) {
    const url = stripUrl(img.dataset.index);
    if (url && img.getAttribute("src") !== url) {
      img.classList.add("loading");      // the old strip stays, dimmed, until the new one is in
      img.src = url;
    }
  }

  const current = () => app.store.get().methods.directions.find((m) => m.name === method.value);

  function buildParams() {
    const m = current();
    paramsFor = method.value;
    const entries = Object.entries(m?.params ?? {}).filter(([k]) => !HIDDEN_PARAMS.has(k));
    paramsBox.replaceChildren(...entries.flatMap(([key, value]) => paramField(key, value, m?.ranges?.[key])));
    advanced.hidden = entries.length === 0;
  }

  function readParams() {
    const params = {};
    for (const input of paramsBox.querySelectorAll("[data-param]")) {
      const key = input.dataset.param;
      if (input.type === "checkbox") params[key] = input.checked;
      else if (input.type === "number") {
        if (input.value !== "") params[key] = Number(input.value);
      } else if (input.dataset.auto) {
        // "auto" parameters (null default) may be a number or a name, e.g. a layer
        const text = input.value.trim();
        if (text !== "") params[key] = Number.isFinite(Number(text)) ? Number(text) : text;
      } else if (input.dataset.json) {
        try {
          params[key] = JSON.parse(input.value);
        } catch {
          throw new Error(`${key}: not valid JSON`);
        }
      } else params[key] = input.value;
    }
    if (!layersRow.hidden && layerStart.value !== "" && layerEnd.value !== "") {
      params.layers = [Number(layerStart.value), Number(layerEnd.value)];
    }
    // send only what differs from the method's defaults: short messages, and the same
    // cached direction set as a default run from the command line
    const defaults = current()?.params ?? {};
    for (const key of Object.keys(params)) {
      if (key in defaults && JSON.stringify(params[key]) === JSON.stringify(defaults[key])) delete params[key];
    }
    return params;
  }

  method.addEventListener("change", () => {
    buildParams();
    app.store.set({});         // the note and buttons depend on the method: draw them again now
  });
  cancel.addEventListener("click", () => app.cancel("directions"));
  walkKind.addEventListener("change", () => app.setWalkKind(walkKind.value));
  compute.addEventListener("click", () => {
    try {
      app.computeDirections(method.value, readParams());
    } catch (err) {
      app.showError(err.message);
    }
  });
  reset.addEventListener("click", () => app.resetSliders());

  function buildSliders(s) {
    const d = s.directions;
    slidersFor = d;
    if (!d) {
      slidersBox.replaceChildren();
      return;
    }
    slidersBox.replaceChildren(
      ...(d.labels ?? []).map((label, index) => {
        const id = `slider-${index}`;
        const name = directionName(d, label, index);
        const raw = `${label}${typeof d.values?.[index] === "number" ? ` · value ${d.values[index].toPrecision(3)}` : ""}`
          + `${typeof d.scales?.[index] === "number" ? ` · step ${d.scales[index].toPrecision(3)}` : ""}`;
        const input = h("input", {
          id,
          type: "range",
          min: String(-SLIDER_RANGE),
          max: String(SLIDER_RANGE),
          step: "0.1",
          value: "0",
          dataset: { testid: "direction-slider", index: String(index) },
          "aria-label": name,
          title: raw,
        });
        const out = h("output", { for: id }, "0.0");
        let pointer = false;
        input.addEventListener("pointerdown", () => {
          pointer = true;
        });
        input.addEventListener("input", () => app.setSlider(index, Number(input.value)));
        // one gesture, one history entry: a pointer commits when it lets go, keys when they stop
        input.addEventListener("change", () => {
          if (pointer) app.commitSliders();
          else app.commitSlidersSoon();
          pointer = false;
        });
        input.addEventListener("blur", () => app.commitSlidersPending());
        // what the direction does, before anyone moves it: the image shown, walked -5 ... +5
        // along it (loaded when in view)
        const strip = h("img", { class: "strip", alt: `${name}: this image walked from -${SLIDER_RANGE} to +${SLIDER_RANGE}`,
          width: "250", height: "50", dataset: { testid: "direction-strip", index: String(index) } });
        for (const done of ["load", "error"]) strip.addEventListener(done, () => strip.classList.remove("loading"));
        stripsSeen.observe(strip);
        return h("div", { class: "slider", title: raw }, h("label", { for: id }, h("span", { class: "name" }, name), out), strip, input);
      }),
    );
  }

  return (s) => {
    setOptions(method, s.methods.directions.map((m) => ({ value: m.name, label: m.label ?? m.name })));
    if (method.value && paramsFor !== method.value) buildParams();
    const model = s.models.find((m) => m.name === s.session?.model);
    const numWs = model?.num_ws ?? 0;
    layersRow.hidden = !(numWs > 1);
    if (!layersRow.hidden) {
      layerStart.max = String(numWs - 1);
      layerEnd.max = String(numWs);
      if (layerStart.value === "") layerStart.value = "0";
      if (layerEnd.value === "") layerEnd.value = String(numWs);
    }
    const m = current();
    const live = s.conn.state === "open" && !!s.session && !s.session.busy;
    const needsMask = !!m?.needs_mask && !s.session?.has_mask;
    const finding = s.computing?.op === "directions";
    compute.disabled = !live || !m || finding || needsMask;
    setText(compute, finding ? "Finding…" : "Find directions");
    cancel.hidden = !finding;
    progress.hidden = !finding;
    setText(progress, finding ? computingText(s.computing) : "");
    setText(note, s.directionsNote || (needsMask
      ? "Paint the region to change with the mask brush first."
      : backgroundText(s, m?.name) || (m?.needs_labels
        ? "Learns from labelled samples; the first run takes a while."
        : "")));
    setTitle.hidden = !s.directions;
    setText(setTitle, s.directions
      ? `${methodLabel(s, s.directions.method)}: ${s.directions.count} directions${finding ? " (the previous set, until the new one is found)" : ""}`
      : "");
    slidersBox.classList.toggle("stale", finding);
    // walks the engine refuses are not offered: the server lists a set's walk kinds (curved needs
    // a REDs set over the global latent, density a Gaussian z)
    const offered = s.directions?.walk_kinds;
    const kinds = offered
      ? { curved: offered.includes("curved"), density: offered.includes("density") && s.session?.space === "z", linear: true }
      : { curved: s.directions?.method === "reds", density: s.session?.space === "z", linear: true };
    for (const option of walkKind.options) option.disabled = !kinds[option.value];
    if (!kinds[walkKind.value]) {
      walkKind.value = "linear";
      if (s.walkKind !== "linear") app.setWalkKind("linear");
    }
    if (s.directions !== slidersFor) buildSliders(s);
    // strips start from the image the sliders walk from: new ones when that image changes
    const key = s.directions && s.session ? `${s.session.id}/${s.directions.set}/${baseOf(s.session)}` : "";
    if (key !== stripsFor) {
      stripsFor = key;
      const { id } = s.session ?? {};
      const set = s.directions?.set;
      stripUrl = (index) => (key ? app.api.exportUrl(id,
        `strip.jpg?set=${encodeURIComponent(set)}&index=${index}&amount=${SLIDER_RANGE}&count=5`, key) : "");
      for (const img of slidersBox.querySelectorAll("img.strip")) {
        const box = img.getBoundingClientRect();
        const visible = box.bottom > 0 && box.top < innerHeight && box.width > 0;
        if (visible) showStrip(img);
        else {
          img.removeAttribute("src");      // asked for when scrolled into view
          img.classList.remove("loading");
        }
      }
    }
    const inputs = slidersBox.querySelectorAll("input");
    inputs.forEach((input, i) => {
      input.disabled = !live;
      const v = s.sliders[i] ?? 0;
      if (Number(input.value) !== v) input.value = String(v);
      const out = input.parentElement.querySelector("output");
      if (out) setText(out, v.toFixed(1));
    });
    reset.disabled = !live || (!s.sliders.some((v) => v !== 0) && !s.committed.some((v) => v !== 0));
  };
}

/** The image the strips start from: the history entry shown (the server walks from it). */
function baseOf(session) {
  return `${session.cursor}-${session.history.length}-${session.history[session.cursor]?.label ?? ""}`;
}

/** What the server's background search says of `method`'s default set for the session's model
 * (GET /api/directions/ready), or "" when it has nothing to say. */
export function backgroundText(s, method) {
  const entry = s.precompute?.enabled ? s.precompute.models?.[s.session?.model]?.[method] : null;
  switch (entry?.state) {
    case "ready": return "Found in the background: opens at once with the default settings.";
    case "running": return "Being found in the background: Find directions with the default settings waits for it.";
    case "paused": return "Being found in the background (paused while drags run): Find directions finds it now.";
    case "yielded": return "Being found for a request: Find directions waits for it.";
    case "queued": return "Queued to be found in the background.";
    default: return "";
  }
}

/** "SeFa" for "sefa": the method's label from /api/methods. */
function methodLabel(s, name) {
  return s.methods.directions.find((m) => m.name === name)?.label ?? name;
}

/** A direction's name: its own label when the set names it ("smile"), else "1st, 2nd ..." of the method. */
export function directionName(set, label, index) {
  const generic = !label || label === `${set.method} ${index}` || /^[a-z_-]+ \d+$/.test(label);
  return generic ? `${set.method} ${index + 1}` : label;
}

/** "Finding DP-LaSE directions… 12 s of about 100 s". */
export function computingText(c) {
  const elapsed = typeof c.elapsed === "number" ? `${Math.round(c.elapsed)} s` : "";
  const estimate = typeof c.estimate === "number" ? ` of about ${Math.max(1, Math.round(c.estimate))} s` : "";
  return `Finding ${c.method ?? ""} directions… ${elapsed}${estimate}`.trim();
}

/** Label and input for one method parameter, typed by its default value. */
/** Label and input for one direction parameter; `range` ({type, min, max}) from GET /api/methods. */
function paramField(key, value, range) {
  const id = `dir-param-${key}`;
  const bounds = range && typeof range.min === "number" ? ` (${range.min}–${range.max})` : "";
  const label = h("label", { for: id }, key.replaceAll("_", " ") + bounds);
  if (typeof value === "boolean") {
    return [h("label", { class: "check" }, h("input", { id, type: "checkbox", checked: value, dataset: { param: key } }), ` ${key.replaceAll("_", " ")}`)];
  }
  if (typeof value === "number") {
    const step = Number.isInteger(value) ? "1" : "any";
    return [label, h("input", { id, type: "number", step, value: String(value), min: range?.min ?? false,
      max: range?.max ?? false, dataset: { param: key } })];
  }
  if (typeof value === "string") return [label, h("input", { id, type: "text", value, dataset: { param: key } })];
  if (value === null) return [label, h("input", { id, type: "text", value: "", placeholder: "auto", dataset: { param: key, auto: "1" } })];
  return [label, h("input", { id, type: "text", value: JSON.stringify(value), dataset: { param: key, json: "1" } })];
}
