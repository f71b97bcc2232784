/**
 * Slider values -> walk items. Pure.
 *
 * The server walks from the base latent, the last committed one. Sliders show
 * the total amount a person dialled in, so what is sent is the part not yet
 * committed: value minus the amount already baked into the base.
 */

/** Round to 1/1000 of a slider unit (finer steps change nothing visible and bloat logs). */
export function round3(v) {
  return Math.round(v * 1000) / 1000;
}

/**
 * @param {number[]} sliders current slider values
 * @param {number[]} committed amounts already in the base latent
 * @returns {{index: number, amount: number}[]} only the sliders that differ
 */
export function walkDeltas(sliders, committed) {
  return sliders
    .map((value, index) => ({ index, amount: round3(value - (committed[index] ?? 0)) }))
    .filter((w) => w.amount !== 0);
}

/**
 * Slider amounts already in the image at `cursor` (summary history, docs/PROTOCOL.md): the walks
 * of set `setId` since the last edit that was not a walk. Sliders read this after undo, redo or a
 * jump, so they stay where the history says the image is.
 */
export function committedAmounts(history, cursor, setId, count) {
  const out = new Array(count).fill(0);
  for (let i = cursor; i > 0; i--) {
    const entry = history[i];
    if (!entry || entry.kind !== "walk") break;
    if (entry.walk?.set !== setId) continue;
    for (const w of entry.walk.walks ?? []) if (w.index < count) out[w.index] = round3(out[w.index] + w.amount);
  }
  return out;
}

/**
 * Whether a set found on the image of history entry `entry` still belongs to the image at `cursor`:
 * only its own walks may lie between them (REDs directions are computed for one image and region).
 */
export function setFitsImage(history, cursor, setId, entry) {
  if (cursor < entry) return false;
  for (let i = entry + 1; i <= cursor; i++) {
    const e = history[i];
    if (!e || e.kind !== "walk" || e.walk?.set !== setId) return false;
  }
  return true;
}
