/**
 * Screen <-> model-image coordinates and point picking. Pure functions.
 *
 * Model coordinates follow the engine (backend/dragwalk/drag/points.py): pixel
 * centres at integers, valid range 0..resolution-1. A click in the middle of a
 * displayed pixel therefore lands exactly on that pixel's integer coordinate.
 */

/** Keep a value inside [lo, hi]. */
export function clamp(value, lo, hi) {
  return Math.min(hi, Math.max(lo, value));
}

/**
 * Position inside a displayed image (CSS pixels from its top-left corner) to
 * model pixels, clamped to the valid range.
 * @param {number} px @param {number} py offsets in CSS pixels
 * @param {number} width @param {number} height displayed size in CSS pixels
 * @param {number} resolution model image side
 * @returns {[number, number]}
 */
export function toModel(px, py, width, height, resolution) {
  const x = (px / width) * resolution - 0.5;
  const y = (py / height) * resolution - 0.5;
  return [clamp(round2(x), 0, resolution - 1), clamp(round2(y), 0, resolution - 1)];
}

/** Model pixels to CSS pixels in a displayed image (inverse of toModel). */
export function toScreen(x, y, width, height, resolution) {
  return [((x + 0.5) / resolution) * width, ((y + 0.5) / resolution) * height];
}

/** Two decimals are plenty for sub-pixel points and keep messages short. */
export function round2(v) {
  return Math.round(v * 100) / 100;
}

/** Euclidean distance between two [x, y] points. */
export function distance(a, b) {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

/**
 * The point nearest to `at` within `radius` (all in the same units), or null.
 * @param {Array<{handle: number[], target: number[]|null}>} pairs
 * @returns {{index: number, role: "handle"|"target"}|null}
 */
export function pickPoint(pairs, at, radius) {
  let best = null;
  let bestDist = radius;
  pairs.forEach((pair, index) => {
    for (const role of ["target", "handle"]) {
      const p = pair[role];
      if (!p) continue;
      const d = distance(p, at);
      if (d <= bestDist) {
        best = { index, role };
        bestDist = d;
      }
    }
  });
  return best;
}
