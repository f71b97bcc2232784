/**
 * Directions panel: pick a method, set its parameters (and a layer range on
 * StyleGAN models), find directions, then one slider per direction. Moving a
 * slider previews (throttled); releasing it commits one history entry.
 */

import { $, h, setOptions } from "../dom.js";

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
  let paramsFor = null;
  let slidersFor = null;

  const current = () => app.store.get().methods.directions.find((m) => m.name === method.value);

  function buildParams() {
    const m = current();
    paramsFor = method.value;
    const entries = Object.entries(m?.params ?? {}).filter(([k]) => !HIDDEN_PARAMS.has(k));
    paramsBox.replaceChildren(...entries.flatMap(([key, value]) => paramField(key, value)));
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

  method.addEventListener("change", buildParams);
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
        const value = typeof d.values?.[index] === "number" ? ` · ${d.values[index].toPrecision(3)}` : "";
        const input = h("input", {
          id,
          type: "range",
          min: String(-SLIDER_RANGE),
          max: String(SLIDER_RANGE),
          step: "0.1",
          value: "0",
          dataset: { testid: "direction-slider", index: String(index) },
          "aria-label": `${label}${value}`,
        });
        const out = h("output", { for: id }, "0.0");
        input.addEventListener("input", () => app.setSlider(index, Number(input.value), false));
        input.addEventListener("change", () => app.setSlider(index, Number(input.value), true));
        return h("div", { class: "slider" }, h("label", { for: id }, h("span", {}, `${label}${value}`), out), input);
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
    compute.disabled = !live || !m || s.computing || needsMask;
    compute.textContent = s.computing ? "Finding…" : "Find directions";
    note.textContent = needsMask
      ? "Paint the region to change with the mask brush first."
      : m?.needs_labels
        ? "Learns from labelled samples; the first run takes a while."
        : "";
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
    const inputs = slidersBox.querySelectorAll("input");
    inputs.forEach((input, i) => {
      input.disabled = !live;
      const v = s.sliders[i] ?? 0;
      if (Number(input.value) !== v) input.value = String(v);
      const out = input.parentElement.querySelector("output");
      if (out) out.textContent = v.toFixed(1);
    });
    reset.disabled = !live || (!s.sliders.some((v) => v !== 0) && !s.committed.some((v) => v !== 0));
  };
}

/** Label and input for one method parameter, typed by its default value. */
function paramField(key, value) {
  const id = `dir-param-${key}`;
  const label = h("label", { for: id }, key.replaceAll("_", " "));
  if (typeof value === "boolean") {
    return [h("label", { class: "check" }, h("input", { id, type: "checkbox", checked: value, dataset: { param: key } }), ` ${key.replaceAll("_", " ")}`)];
  }
  if (typeof value === "number") {
    const step = Number.isInteger(value) ? "1" : "any";
    return [label, h("input", { id, type: "number", step, value: String(value), dataset: { param: key } })];
  }
  if (typeof value === "string") return [label, h("input", { id, type: "text", value, dataset: { param: key } })];
  if (value === null) return [label, h("input", { id, type: "text", value: "", placeholder: "auto", dataset: { param: key, auto: "1" } })];
  return [label, h("input", { id, type: "text", value: JSON.stringify(value), dataset: { param: key, json: "1" } })];
}
