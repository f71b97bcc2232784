/**
 * A tiny observable state: one object, shallow patches, subscribers called
 * after every change. Enough for one page; no framework needed.
 */

export function createStore(initial) {
  let state = { ...initial };
  const listeners = new Set();
  return {
    get: () => state,
    /** Shallow-merge a patch (object or function of the state) and notify. */
    set(patch) {
      const next = typeof patch === "function" ? patch(state) : patch;
      state = { ...state, ...next };
      for (const fn of listeners) fn(state);
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}
