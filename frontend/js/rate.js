/** Events per second over a sliding window (the page's drag frame rate). */

export class RateMeter {
  /** @param {number} windowMs how far back events count */
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.times = [];
  }

  /** Record one event at `now` (ms) and return the current rate, or null with fewer than two events. */
  tick(now) {
    this.times.push(now);
    while (this.times.length && now - this.times[0] > this.windowMs) this.times.shift();
    const span = (this.times[this.times.length - 1] - this.times[0]) / 1000;
    return this.times.length > 1 && span > 0 ? (this.times.length - 1) / span : null;
  }

  reset() {
    this.times.length = 0;
  }
}
