/**
 * Recent sessions of this browser (localStorage): a person who opened a photo or a log can go
 * back to what they were editing. Each item: {id, model, label, time}.
 */

const KEY = "dragwalk.recent";
const KEEP = 12;

export function readRecents() {
  try {
    const items = JSON.parse(localStorage.getItem(KEY) ?? "[]");
    return Array.isArray(items) ? items.filter((r) => r && typeof r.id === "string").slice(0, KEEP) : [];
  } catch {
    return [];
  }
}

/** Put `summary` first in the list (once) and return the list. */
export function addRecent(summary) {
  const first = summary.history?.[0];
  const item = {
    id: summary.id,
    model: summary.model,
    label: summary.seed !== null && summary.seed !== undefined ? `seed ${summary.seed}` : first?.label ?? "session",
    time: Date.now(),
  };
  const items = [item, ...readRecents().filter((r) => r.id !== item.id)].slice(0, KEEP);
  try {
    localStorage.setItem(KEY, JSON.stringify(items));
  } catch {
    /* private mode: the list lives for this page only */
  }
  return items;
}
