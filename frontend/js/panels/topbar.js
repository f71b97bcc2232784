/** Top bar: connection state and reconnect, undo/redo (buttons and keys), export links, scaling. */

import { $, setText } from "../dom.js";

const CONN_TEXT = {
  idle: () => "starting…",
  connecting: () => "connecting…",
  reconnecting: (c) => `reconnecting (attempt ${c.attempt})…`,
  waiting: (c) => `disconnected: ${c.reason ?? "connection lost"}; retrying in ${Math.max(0, Math.ceil(((c.retryAt ?? Date.now()) - Date.now()) / 1000))} s`,
  open: () => "connected",
  closed: () => "disconnected",
  failed: (c) => `cannot connect: ${c.reason ?? "unknown reason"}`,
};

export function initTopbar(app) {
  const { store } = app;
  const conn = $("[data-testid=connection]");
  const connText = $("#conn-text");
  const reconnect = $("#reconnect");
  const undo = $("#undo");
  const redo = $("#redo");
  const smooth = $("#smooth");
  const stage = $("#stage");
  const exportMenu = $("#export-menu");
  const links = {
    png: [$("#export-png"), "image.png"],
    big: [$("#export-png-big"), "image.png"],
    latent: [$("#export-latent"), "latent.npz"],
    latentJson: [$("#export-latent-json"), "latent.json"],
    log: [$("#export-log"), "log.json"],
    gif: [$("#export-gif"), "animation.gif"],
    mp4: [$("#export-mp4"), "animation.mp4"],
  };

  const scale = $("#export-scale");
  const smoothExport = $("#export-smooth");
  const big = links.big[0];
  const showScale = () => {
    setText(big, `Image ${scale.value}× (PNG${smoothExport.checked ? ", smooth" : ""})`);
    big.setAttribute("download", `dragwalk-${scale.value}x.png`);
    store.set({});
  };
  scale.addEventListener("change", showScale);
  smoothExport.addEventListener("change", showScale);
  reconnect.addEventListener("click", () => app.reconnect());
  undo.addEventListener("click", () => app.undo());
  redo.addEventListener("click", () => app.redo());
  smooth.addEventListener("change", () => stage.classList.toggle("pixelated", !smooth.checked));
  exportMenu.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      exportMenu.open = false;
      exportMenu.querySelector("summary").focus();
    }
  });
  for (const [a] of Object.values(links)) {
    a.addEventListener("click", (e) => {
      exportMenu.open = false;
      if (!a.href || e.ctrlKey || e.metaKey || e.shiftKey) return; // let the browser open it elsewhere
      e.preventDefault();
      app.download(a.href, a.getAttribute("download"));
    });
  }

  document.addEventListener("keydown", (e) => {
    if (!(e.ctrlKey || e.metaKey) || isTyping(e.target)) return;
    const key = e.key.toLowerCase();
    // decided from the state, not the buttons: they are redrawn on the next animation frame
    const s = store.get();
    if (key === "z" && !e.shiftKey) {
      e.preventDefault();
      if (canMove(s, "can_undo")) app.undo();
    } else if ((key === "z" && e.shiftKey) || key === "y") {
      e.preventDefault();
      if (canMove(s, "can_redo")) app.redo();
    }
  });

  let countdown = null;
  const showConnection = (c) => {
    setText(connText, (CONN_TEXT[c.state] ?? (() => c.state))(c));
  };

  return (s) => {
    const c = s.conn;
    conn.dataset.state = c.state;
    showConnection(c);
    // count the retry wait down while it lasts
    clearInterval(countdown);
    countdown = c.state === "waiting" ? setInterval(() => showConnection(app.store.get().conn), 500) : null;
    reconnect.hidden = !(c.state === "waiting" || c.state === "failed" || c.state === "closed");
    undo.disabled = !canMove(s, "can_undo");
    redo.disabled = !canMove(s, "can_redo");
    const id = s.session?.id;
    const version = s.session ? `${s.session.cursor}-${s.session.history?.length ?? 0}` : undefined;
    const hasDrag = !!s.session?.history?.some((e) => e.kind === "drag");
    // no MP4 encoder on this server: the entry is not offered at all
    links.mp4[0].hidden = s.exports?.mp4 === false;
    for (const [key, [a, file]] of Object.entries(links)) {
      const enabled = !!id && (key === "gif" || key === "mp4" ? hasDrag : true);
      const path = key === "big" ? `${file}?scale=${scale.value}${smoothExport.checked ? "&smooth=true" : ""}` : file;
      if (enabled) {
        const href = app.api.exportUrl(id, path, version);
        if (a.getAttribute("href") !== href) a.href = href;
        a.removeAttribute("aria-disabled");
      } else {
        a.removeAttribute("href");
        a.setAttribute("aria-disabled", "true");
      }
    }
  };
}

/** Whether undo ("can_undo") or redo ("can_redo") can act now: connected, idle, and history allows it. */
function canMove(s, flag) {
  return s.conn.state === "open" && !!s.session && !s.session.busy && !!s.session[flag];
}

/** True when keys belong to a text field (its own undo must keep working). */
export function isTyping(el) {
  return el instanceof HTMLElement && (el.isContentEditable || (el.tagName === "INPUT" && !["range", "checkbox", "radio", "button"].includes(el.type)) || el.tagName === "TEXTAREA");
}
