/**
 * Reconnect delays: exponential with a cap and a little jitter, so many pages
 * reconnecting after a server restart do not all knock at the same instant.
 */

/**
 * @param {number} attempt 0 for the first retry.
 * @param {{base?: number, cap?: number, jitter?: number, random?: () => number}} [options]
 * @returns {number} milliseconds to wait.
 */
export function backoffDelay(attempt, { base = 500, cap = 10000, jitter = 0.2, random = Math.random } = {}) {
  const raw = Math.min(cap, base * 2 ** Math.max(0, attempt));
  const spread = raw * jitter * (2 * random() - 1);
  return Math.max(0, Math.round(Math.min(cap, raw + spread)));
}
