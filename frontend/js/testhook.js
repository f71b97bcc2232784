/**
 * `window.dragwalk`: a read-only view of what the page shows, for end-to-end
 * tests (which still drive the page through real clicks and keys). Getters
 * return copies, so nothing outside can change the page through it.
 */

export function installTestHook(store, stage) {
  Object.defineProperty(window, "dragwalk", {
    value: Object.freeze({
      get state() {
        return structuredClone(store.get());
      },
      get lastFrameSeq() {
        return store.get().lastFrame?.seq ?? null;
      },
      get handles() {
        return store.get().pairs.map((p) => [...p.handle]);
      },
      get targets() {
        return store.get().pairs.filter((p) => p.target).map((p) => [...p.target]);
      },
      get maskPixels() {
        return stage.mask ? stage.mask.count() : 0;
      },
    }),
  });
}
