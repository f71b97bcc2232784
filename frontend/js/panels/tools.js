/**
 * Canvas toolbar: points / brush / eraser, mask mode (flexible or fixed area), brush radius, mask
 * visibility, reset buttons, the pair count against its limit, and a hint for the next step.
 */

import { $, setText } from "../dom.js";
import { MAX_PAIRS } from "../state.js";

/** What to do next, for the tool in hand and the points placed so far. */
export function hintFor(s) {
  if (s.tool === "brush") {
    return s.maskMode === "fixed"
      ? "Paint the area that must stay as it is; everything else may change. The Eraser removes paint."
      : "Paint the area that may change; everything else stays. The Eraser removes paint.";
  }
  if (s.tool === "eraser") return "Erase parts of the painted area.";
  const last = s.pairs[s.pairs.length - 1];
  if (last && !last.target) return "Now click where this handle should go (its target, blue).";
  if (s.pairs.length >= MAX_PAIRS) return `All ${MAX_PAIRS} pairs placed: delete one (right-click or Delete) to add another.`;
  if (s.pairs.length) {
    return "Press Start to drag, or click to add another handle. Drag a point to move it; right-click or Delete removes it.";
  }
  return "Click (or tap) to add a handle (red), then again for its target (blue).";
}

export function initTools(app) {
  const { store } = app;
  const radius = $("#brush-radius");
  const radiusValue = $("#brush-radius-value");
  const visible = $("#mask-visible");
  const maskClear = $("#mask-clear");
  const pointsClear = $("#points-clear");
  const hint = $("#hint");
  const frameInfo = $("#frame-info");
  const pairCount = $("#pair-count");
  const radios = [...document.querySelectorAll("input[name=tool]")];
  const modes = [...document.querySelectorAll("input[name=mask-mode]")];

  for (const r of radios) r.addEventListener("change", () => r.checked && store.set({ tool: r.value }));
  for (const r of modes) r.addEventListener("change", () => r.checked && app.setMaskMode(r.value));
  radius.addEventListener("input", () => {
    setText(radiusValue, radius.value);
    store.set({ brushRadius: Number(radius.value) });
  });
  visible.addEventListener("change", () => store.set({ maskVisible: visible.checked }));
  maskClear.addEventListener("click", () => app.clearMask());
  pointsClear.addEventListener("click", () => app.clearPoints());

  return (s) => {
    for (const r of radios) r.checked = r.value === s.tool;
    for (const r of modes) r.checked = r.value === s.maskMode;
    visible.checked = s.maskVisible;
    setText(hint, hintFor(s));
    const complete = s.pairs.filter((p) => p.target).length;
    setText(pairCount, `${complete} / ${MAX_PAIRS} pairs`);
    pairCount.classList.toggle("full", s.pairs.length >= MAX_PAIRS);
    const live = s.conn.state === "open" && !!s.session;
    maskClear.disabled = !live || s.maskPixels === 0;
    // a running drag needs at least its points: clearing them is for after Stop
    pointsClear.disabled = !live || s.pairs.length === 0 || s.drag.running;
    const f = s.lastFrame;
    setText(frameInfo, f
      ? `${s.session?.model ?? ""} · ${s.session?.width && s.session.width !== s.session.height ? `${s.session.width}x${s.session.height}` : s.session?.resolution ?? "?"} px · frame ${f.seq} (${f.kind}${f.kind === "drag" ? ` step ${f.step}` : ""})`
      : "no frame yet");
  };
}
