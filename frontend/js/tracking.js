/**
 * Pairs drag `progress` events with drag frames by step number, so the handle
 * markers drawn over a frame are where tracking found them in that very image
 * (the two can arrive in either order, and frames may be skipped by credits).
 * A frame of an older step than the newest progress (an in-between warp frame drawn late,
 * say) no longer moves the markers: they would jump back from where tracking has them.
 */

export class TrackedHandles {
  /** @param {number} keep how many recent steps to remember */
  constructor(keep = 64) {
    this.keep = keep;
    this.byStep = new Map();
    this.frameStep = null;
    this.latest = -1;
  }

  /** A progress event arrived; returns the handles to show now, or null (its frame is not drawn yet). */
  progress(step, handles) {
    this.byStep.set(step, handles);
    this.latest = Math.max(this.latest, step);
    if (this.byStep.size > this.keep) this.byStep.delete(this.byStep.keys().next().value);
    return this.frameStep === step ? handles : null;
  }

  /** A frame was drawn; returns the handles of its step when known, else null. */
  frame(kind, step) {
    this.frameStep = kind === "drag" ? step : null;
    if (kind !== "drag" || step < this.latest) return null;
    return this.byStep.has(step) ? this.byStep.get(step) : null;
  }

  reset() {
    this.byStep.clear();
    this.frameStep = null;
    this.latest = -1;
  }
}
