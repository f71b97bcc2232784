/** Events per second over a sliding window (the page's drag frame rate). */

export class RateMeter {
  /** @param {number} windowMs how far back events count */
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.times = [];
  }

  /**
   * Record one event at `now` (ms) and return the current rate, or null until at least three
   * events span a quarter of the window: a burst of frames (a warp's step-0 frames arrive
   * together) is not a rate, and reading it as one gave "1666 frames/s".
   */
  tick(now) {
    this.times.push(now);
    while (this.times.length && now - this.times[0] > this.windowMs) this.times.shift();
    const span = (this.times[this.times.length - 1] - this.times[0]) / 1000;
    return this.times.length > 2 && span * 1000 >= this.windowMs / 4 ? (this.times.length - 1) / span : null;
  }

  reset() {
    this.times.length = 0;
  }
}
