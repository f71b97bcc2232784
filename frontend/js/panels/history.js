/** History list: every edit of the session; click one to go back to it. */

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
            `${entry.index}. ${entry.label || entry.kind}`,
          ),
        ),
      ),
    );
    list.querySelector("[aria-current=step]")?.scrollIntoView?.({ block: "nearest" });
  };
}
