/** Canvas toolbar: points / brush / eraser, brush radius, mask visibility, clear buttons, hint. */

import { $ } from "../dom.js";

const HINTS = {
  points: "Click to add a handle (red), click again for its target (blue). Drag a point to move it; right-click or Delete removes it.",
  brush: "Paint the region that may change. Switch to the Eraser to remove paint.",
  eraser: "Erase parts of the painted region.",
};

export function initTools(app) {
  const { store } = app;
  const radius = $("#brush-radius");
  const radiusValue = $("#brush-radius-value");
  const visible = $("#mask-visible");
  const maskClear = $("#mask-clear");
  const pointsClear = $("#points-clear");
  const hint = $("#hint");
  const frameInfo = $("#frame-info");
  const radios = [...document.querySelectorAll("input[name=tool]")];

  for (const r of radios) r.addEventListener("change", () => r.checked && store.set({ tool: r.value }));
  radius.addEventListener("input", () => {
    radiusValue.textContent = radius.value;
    store.set({ brushRadius: Number(radius.value) });
  });
  visible.addEventListener("change", () => store.set({ maskVisible: visible.checked }));
  maskClear.addEventListener("click", () => app.clearMask());
  pointsClear.addEventListener("click", () => app.clearPoints());

  return (s) => {
    for (const r of radios) r.checked = r.value === s.tool;
    visible.checked = s.maskVisible;
    hint.textContent = HINTS[s.tool] ?? "";
    const live = s.conn.state === "open" && !!s.session;
    maskClear.disabled = !live;
    // a running drag needs at least its points: clearing them is for after Stop
    pointsClear.disabled = !live || s.pairs.length === 0 || s.drag.running;
    const f = s.lastFrame;
    frameInfo.textContent = f
      ? `${s.session?.model ?? ""} · ${s.session?.resolution ?? "?"} px · frame ${f.seq} (${f.kind}${f.kind === "drag" ? ` step ${f.step}` : ""})`
      : "no frame yet";
  };
}
