/**
 * Why a drag ended, in words a person can act on (docs/PROTOCOL.md, `done.reason`), and the
 * per-pair read-out. Pure: no DOM, unit-tested in node.
 *
 * The page only ever says "converged" when the server's done event did: the run decides that
 * with an image check, and nothing here infers it from distances.
 */

/** reason -> [short title, explanation] */
const REASONS = Object.freeze({
  converged: ["converged", "the content reached its targets"],
  nothing_to_move: ["nothing to move", "every handle was already on its target"],
  tracking_lost: [
    "tracking lost",
    "the tracker reached the target but the content did not follow — try the Warp method or a mask",
  ],
  max_steps: [
    "max steps reached",
    "the content did not reach its targets within the steps allowed — raise Max steps (with Warp: its Refinement steps), or try the Warp method",
  ],
  stopped: ["stopped", "you stopped the drag; what it reached is kept"],
  cancelled: ["cancelled", "another edit took over; what the drag reached is kept"],
  error: ["failed", "the drag failed (see the error message)"],
});

/** {title, detail} for a done reason; an unknown reason is shown as it came. */
export function describeEnd(reason) {
  const known = REASONS[reason];
  if (known) return { title: known[0], detail: known[1] };
  return { title: String(reason ?? "finished"), detail: "" };
}

/** The drag panel's status line for the page's drag state. */
export function dragStatus(drag) {
  if (drag.running) return "dragging…";
  if (!drag.reason) return "idle";
  const { title, detail } = describeEnd(drag.reason);
  return detail ? `${title}: ${detail}` : title;
}

/**
 * One line per handle/target pair: "1: 3.2 px", or "1: nothing to move" for pairs that were
 * already on their target when they were set; a pair the done event marks `unsure` (its handle
 * reached the target, its content did not) says so.
 */
export function pairLines(distances, idle, unsure) {
  if (!Array.isArray(distances)) return [];
  return distances.map((d, i) => {
    if (idle?.[i]) return `${i + 1}: nothing to move`;
    const mark = unsure?.[i] ? " · tracking unsure" : "";
    return `${i + 1}: ${typeof d === "number" && Number.isFinite(d) ? d.toFixed(1) : "–"} px${mark}`;
  });
}
