/**
 * Rate limiting for slider previews: at most one call per interval, and the
 * last value always goes out (trailing call), so the preview ends where the
 * slider stopped.
 */

/**
 * @template {any[]} A
 * @param {(...args: A) => void} fn
 * @param {number} intervalMs
 * @param {{now?: () => number, setTimer?: Function, clearTimer?: Function}} [clock] injectable for tests.
 * @returns {((...args: A) => void) & {cancel: () => void, flush: () => void, pending: () => boolean}}
 */
export function throttle(fn, intervalMs, clock = {}) {
  const now = clock.now ?? (() => Date.now());
  const setTimer = clock.setTimer ?? ((cb, ms) => setTimeout(cb, ms));
  const clearTimer = clock.clearTimer ?? ((id) => clearTimeout(id));
  let last = -Infinity;
  let timer = null;
  let pending = null;

  const fire = () => {
    timer = null;
    if (pending === null) return;
    const args = pending;
    pending = null;
    last = now();
    fn(...args);
  };

  const throttled = (...args) => {
    pending = args;
    const wait = last + intervalMs - now();
    if (wait <= 0 && timer === null) {
      fire();
    } else if (timer === null) {
      timer = setTimer(fire, Math.max(0, wait));
    }
  };
  throttled.cancel = () => {
    if (timer !== null) clearTimer(timer);
    timer = null;
    pending = null;
  };
  /** Whether a call waits for its turn (not yet made). */
  throttled.pending = () => pending !== null;
  throttled.flush = () => {
    if (timer !== null) clearTimer(timer);
    fire();
  };
  return throttled;
}
