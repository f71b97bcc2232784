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
