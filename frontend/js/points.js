/**
 * The handle -> target pairs the user edits, as immutable updates. Pure.
 *
 * A pair may lack its target while the user is placing it; only complete
 * pairs are sent to the server (it refuses unequal counts).
 */

/** @typedef {{handle: number[], target: number[]|null}} Pair */

/**
 * Add a point: completes the last pair if it waits for a target, else starts a pair. With
 * `maxPairs` pairs already complete a new pair is refused (`refused: true`, nothing changes):
 * the server takes at most that many, and a click must never vanish silently.
 */
export function addPoint(pairs, xy, maxPairs = Infinity) {
  const last = pairs[pairs.length - 1];
  if (last && !last.target) {
    return {
      pairs: [...pairs.slice(0, -1), { handle: last.handle, target: [...xy] }],
      selected: { index: pairs.length - 1, role: "target" },
    };
  }
  if (pairs.length >= maxPairs) return { pairs, selected: null, refused: true };
  return {
    pairs: [...pairs, { handle: [...xy], target: null }],
    selected: { index: pairs.length, role: "handle" },
  };
}

/** Move one point of one pair. */
export function movePoint(pairs, { index, role }, xy) {
  return pairs.map((pair, i) => (i === index ? { ...pair, [role]: [...xy] } : pair));
}

/** Delete a whole pair (a handle without its target means nothing). */
export function deletePair(pairs, index) {
  return pairs.filter((_, i) => i !== index);
}

/** The complete pairs as the protocol's {handles, targets}. */
export function toMessage(pairs) {
  const complete = pairs.filter((p) => p.target);
  return { handles: complete.map((p) => p.handle), targets: complete.map((p) => p.target) };
}

/** Pairs from the server's {handles, targets}, keeping a local half-placed pair. */
export function fromServer(points, localPairs = []) {
  const handles = points?.handles ?? [];
  const targets = points?.targets ?? [];
  const pairs = handles.map((h, i) => ({ handle: [...h], target: targets[i] ? [...targets[i]] : null }));
  const pending = localPairs.filter((p) => !p.target);
  return [...pairs, ...pending];
}

/** Replace the handles of the complete pairs by tracked positions (drag progress). */
export function withTrackedHandles(pairs, handles) {
  let k = 0;
  return pairs.map((pair) => {
    if (!pair.target) return pair;
    const h = handles[k++];
    return h ? { ...pair, handle: [...h] } : pair;
  });
}

/** Largest handle-target distance of complete pairs (0 when none). */
export function maxRemaining(pairs) {
  return pairs.reduce((m, p) => (p.target ? Math.max(m, Math.hypot(p.handle[0] - p.target[0], p.handle[1] - p.target[1])) : m), 0);
}
