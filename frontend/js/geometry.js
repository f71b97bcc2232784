/**
 * Screen <-> model-image coordinates and point picking. Pure functions.
 *
 * Model coordinates follow the engine (backend/dragwalk/drag/points.py): pixel
 * centres at integers, valid range 0..width-1 by 0..height-1. A click in the middle of a
 * displayed pixel therefore lands exactly on that pixel's integer coordinate. `resolution`
 * is the model image's side, or [width, height] for a non-square model.
 */

/** [width, height] of a model image: a side, or the pair itself. */
export function dims(resolution) {
  return Array.isArray(resolution) ? [resolution[0], resolution[1]] : [resolution, resolution];
}

/** Keep a value inside [lo, hi]. */
export function clamp(value, lo, hi) {
  return Math.min(hi, Math.max(lo, value));
}

/**
 * Position inside a displayed image (CSS pixels from its top-left corner) to
 * model pixels, clamped to the valid range.
 * @param {number} px @param {number} py offsets in CSS pixels
 * @param {number} width @param {number} height displayed size in CSS pixels
 * @param {number|[number, number]} resolution model image side, or [width, height]
 * @returns {[number, number]}
 */
export function toModel(px, py, width, height, resolution) {
  const [rw, rh] = dims(resolution);
  const x = (px / width) * rw - 0.5;
  const y = (py / height) * rh - 0.5;
  return [clamp(round2(x), 0, rw - 1), clamp(round2(y), 0, rh - 1)];
}

/** Model pixels to CSS pixels in a displayed image (inverse of toModel). */
export function toScreen(x, y, width, height, resolution) {
  const [rw, rh] = dims(resolution);
  return [((x + 0.5) / rw) * width, ((y + 0.5) / rh) * height];
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
