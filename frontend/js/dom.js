/** Small DOM helpers so panels stay short and readable. */

/** First element matching `selector` under `root` (throws if missing: a page bug, not a user error). */
export function $(selector, root = document) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`page element missing: ${selector}`);
  return el;
}

/**
 * Create an element: h("button", {class: "x", onclick: fn, dataset: {testid: "y"}}, "text", child).
 * Attributes starting with "on" become listeners; `false`/`null` attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace the options of a <select>, keeping the current value when still offered. */
export function setOptions(select, options, preferred) {
  const keep = preferred ?? select.value;
  const key = JSON.stringify(options);
  if (select.dataset.options !== key) {
    select.replaceChildren(...options.map(({ value, label }) => h("option", { value }, label)));
    select.dataset.options = key;
  }
  if (options.some((o) => o.value === keep)) select.value = keep;
}

/** Format a number for read-outs ("-" when unknown). */
export function fmt(value, digits = 1) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
}

/**
 * Set an element's text only when it differs: panels render on every animation frame with a
 * change, and rewriting equal text still makes the browser lay the page out again.
 */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}
