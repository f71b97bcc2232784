/**
 * Drag panel: method and its settings (the session model's tuned defaults), Start/Stop, live step,
 * remaining distance per pair, frame rate, and why the drag ended in words.
 */

import { $, fmt, h, setOptions, setText } from "../dom.js";
import { toMessage } from "../points.js";
import { dragStatus, pairLines } from "../reasons.js";

export function initDragPanel(app) {
  const method = $("#drag-method");
  const lr = $("#drag-lr");
  const lambda = $("#drag-lambda");
  const steps = $("#drag-steps");
  const paramsBox = $("#drag-params");
  const start = $("#drag-start");
  const stop = $("#drag-stop");
  const stepOut = $("#drag-step");
  const remainingOut = $("#drag-remaining");
  const fpsOut = $("#drag-fps");
  const statusOut = $("#drag-status");
  const pairsOut = $("#drag-pairs");
  let defaultsFor = null;
  let shownPairs = "";

  const current = () => app.store.get().methods.drag.find((x) => x.name === method.value);

  /** Fill the common fields and build the method's own settings from GET /api/methods. */
  function applyDefaults() {
    const m = current();
    const p = m?.params ?? {};
    lr.value = typeof p.lr === "number" ? String(p.lr) : "";
    lambda.value = typeof p.lambda_mask === "number" ? String(p.lambda_mask) : "";
    if (typeof p.max_steps === "number") steps.value = String(p.max_steps);
    const specs = m?.details?.params ?? {};
    paramsBox.replaceChildren(...Object.entries(specs).flatMap(([key, spec]) => methodField(key, spec)));
    defaultsFor = defaultsKey(app.store.get());
    method.title = m?.warps ? "moves the content at once: dropping a target shows a preview" : "";
  }

  /** Defaults are filled again when the method or the model they were tuned for changes. */
  const defaultsKey = (s) => `${method.value}@${s.methodsModel ?? ""}`;

  /** Only settings that differ from the method's defaults are sent (short messages, clean logs). */
  function readParams() {
    const params = { max_steps: Number.parseInt(steps.value, 10) };
    if (lr.value !== "") params.lr = Number(lr.value);
    if (lambda.value !== "") params.lambda_mask = Number(lambda.value);
    for (const input of paramsBox.querySelectorAll("[data-param]")) {
      const value = Number(input.value);
      if (input.value !== "" && value !== Number(input.dataset.default)) params[input.dataset.param] = value;
    }
    return params;
  }

  method.addEventListener("change", () => {
    applyDefaults();
    app.previewDrag();
  });
  app.setDragSettings(() => ({ method: method.value || undefined, params: readParams() }));
  start.addEventListener("click", () => {
    for (const input of [lr, lambda, steps, ...paramsBox.querySelectorAll("input")]) {
      if (!input.checkValidity()) {
        app.showError(`${input.labels?.[0]?.textContent ?? input.id}: ${input.validationMessage}`);
        input.focus();
        return;
      }
    }
    app.startDrag(method.value || undefined, readParams());
  });
  stop.addEventListener("click", () => app.stopDrag());
  lr.addEventListener("change", () => {
    if (app.store.get().drag.running && lr.value !== "" && lr.checkValidity()) app.setLr(Number(lr.value));
  });

  return (s) => {
    // until the person picks one, the method is the server's default (the Warp), not the list's first
    const serverDefault = s.methods.drag.find((m) => m.default)?.name;
    setOptions(method, s.methods.drag.map((m) => ({ value: m.name, label: m.label ?? m.name })),
      method.value || serverDefault);
    if (method.value && defaultsFor !== defaultsKey(s)) applyDefaults();
    const live = s.conn.state === "open" && !!s.session;
    const running = s.drag.running;
    const complete = toMessage(s.pairs).handles.length;
    start.disabled = !live || running || !!s.session?.busy || complete === 0;
    start.title = complete === 0 ? "Add a handle and its target on the image first" : "Start dragging";
    stop.disabled = !live || !running;
    method.disabled = running;
    setText(stepOut, stepText(s.drag, Number.parseInt(steps.value, 10)));
    setText(remainingOut, typeof s.drag.remaining === "number" ? `${fmt(s.drag.remaining, 2)} px` : "–");
    const sps = typeof s.drag.stepsPerSecond === "number" ? ` (${fmt(s.drag.stepsPerSecond)} steps/s)` : "";
    setText(fpsOut, `${fmt(s.drag.fps)}${sps}`);
    setText(statusOut, running && s.conn.state !== "open"
      ? "connection lost: the drag's progress shows again once the page reconnects"
      : dragStatus(s.drag));
    statusOut.dataset.reason = running ? "" : s.drag.reason ?? "";
    const lines = pairLines(s.drag.distances, s.drag.idle, s.drag.unsure);
    const key = JSON.stringify([lines, s.drag.idle]);
    if (key !== shownPairs) {
      shownPairs = key;
      pairsOut.replaceChildren(
        ...(lines.length
          ? lines.map((line, i) => h("li", { class: s.drag.idle?.[i] ? "idle" : "", dataset: { testid: "drag-pair" } }, line))
          : [h("li", {}, "–")]),
      );
    }
  };
}

/** "12 / 200 · at most 9 s left": the step, the budget, and the time the rest can take at the current pace. */
export function stepText(drag, maxSteps) {
  if (drag.step === null) return "–";
  if (!drag.running || !Number.isFinite(maxSteps)) return String(drag.step);
  const left = maxSteps - drag.step;
  const eta = drag.stepsPerSecond > 0 && left > 0 ? ` · at most ${Math.ceil(left / drag.stepsPerSecond)} s left` : "";
  return `${drag.step} / ${maxSteps}${eta}`;
}

/** Label and number input for one method setting ({default, min, max, label, help, integer}). */
function methodField(key, spec) {
  const id = `drag-param-${key}`;
  const value = spec?.default;
  return [
    h("label", { for: id, title: spec?.help ?? "" }, spec?.label ?? key),
    h("input", {
      id,
      type: "number",
      step: spec?.integer ? "1" : "any",
      min: spec?.min ?? false,
      max: spec?.max ?? false,
      value: typeof value === "number" ? String(value) : "",
      placeholder: "auto",
      title: spec?.help ?? "",
      dataset: { param: key, default: String(value ?? "") },
    }),
  ];
}
