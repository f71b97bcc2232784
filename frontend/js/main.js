/**
 * Entry point: build the controller, attach the panels, render on every state
 * change, and start (or resume) a session.
 */

import { createApp } from "./app.js";
import { $, setText } from "./dom.js";
import { initDirectionsPanel } from "./panels/directions.js";
import { initDragPanel } from "./panels/drag.js";
import { initHistoryPanel } from "./panels/history.js";
import { initSessionPanel } from "./panels/session.js";
import { initTools } from "./panels/tools.js";
import { initTopbar } from "./panels/topbar.js";

const app = createApp({ stageRoot: $("#stage") });

const notice = $("#notice");
const errorBox = $("#error");
const errorText = $("#error-text");
const opCancel = $("#op-cancel");
$("#error-close").addEventListener("click", () => app.clearError());
opCancel.addEventListener("click", () => app.cancel("invert"));

function renderStatus(s) {
  setText(notice, s.notice);
  // an inversion runs long: it can be cancelled (the latent fitted so far is kept)
  opCancel.hidden = s.computing?.op !== "invert";
  errorBox.hidden = !s.error;
  setText(errorText, s.error);
}

const renderers = [
  initTopbar(app),
  initSessionPanel(app),
  initHistoryPanel(app),
  initTools(app),
  initDragPanel(app),
  initDirectionsPanel(app),
  renderStatus,
];

let scheduled = false;
app.store.subscribe(() => {
  // Many events can arrive in one tick (progress + frame); render once per animation frame.
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    const s = app.store.get();
    for (const render of renderers) render(s);
  });
});

app.boot();
