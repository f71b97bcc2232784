/** History list: every edit of the session, each with a thumbnail; click one to go back to it. */

import { $, h } from "../dom.js";

export function initHistoryPanel(app) {
  const list = $("#history");
  let shown = "";

  return (s) => {
    const history = s.session?.history ?? [];
    const cursor = s.session?.cursor ?? -1;
    const disabled = s.conn.state !== "open" || !!s.session?.busy;
    const key = JSON.stringify([history, cursor, disabled]);
    if (key === shown) return;
    shown = key;
    list.replaceChildren(
      ...history.map((entry) =>
        h(
          "li",
          { class: entry.index > cursor ? "future" : "" },
          h(
            "button",
            {
              type: "button",
              disabled,
              "aria-current": entry.index === cursor ? "step" : false,
              dataset: { testid: "history-entry", index: String(entry.index) },
              title: entry.index > cursor ? "undone: click to redo up to here" : "go back to this state",
              onclick: () => app.goto(entry.index),
            },
            h("img", {
              class: "thumb", alt: "", width: "32", height: "32", loading: "lazy",
              // an entry's image never changes: keyed by its place and label, fetched once
              src: app.api.exportUrl(s.session.id, `image.png?entry=${entry.index}`, `${entry.index}-${entry.label}`),
            }),
            `${entry.index}. ${entry.label || entry.kind}`,
          ),
        ),
      ),
    );
    // keep the current entry in view inside the list (never scroll the page: on a phone the
    // list is far below the image)
    const current = list.querySelector("[aria-current=step]");
    const box = list.closest(".panel");
    for (const scroller of [list, box]) {
      if (!current || !scroller || scroller.scrollHeight <= scroller.clientHeight) continue;
      const top = current.offsetTop - scroller.offsetTop;
      if (top < scroller.scrollTop || top > scroller.scrollTop + scroller.clientHeight - current.offsetHeight) {
        scroller.scrollTop = Math.max(0, top - scroller.clientHeight / 2);
      }
    }
  };
}
