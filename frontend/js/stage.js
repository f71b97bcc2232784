/**
 * The canvas in the middle: the current frame (drawn at model resolution and
 * scaled by CSS, pixelated or smooth) and an overlay layer for points, arrows,
 * the mask and the brush cursor. Pointer and keyboard input on the canvas turn
 * into point and mask edits through the callbacks it is given.
 */

import { clamp, pickPoint, toModel, toScreen } from "./geometry.js";
import { MaskLayer } from "./mask.js";
import { addPoint, deletePair, movePoint } from "./points.js";

const HANDLE = "#e5383b";
const TARGET = "#2f6fed";
const PICK_RADIUS_CSS = 10;

export class Stage {
  /**
   * @param {HTMLElement} root element holding the two canvases
   * @param {{get: () => object, set: (patch: object) => void}} store
   * @param {{onPointsCommitted: () => void, onMaskCommitted: () => void, onPairsFull: () => void,
   *          maxPairs: number}} actions
   */
  constructor(root, store, actions) {
    this.root = root;
    this.store = store;
    this.actions = actions;
    this.image = root.querySelector("[data-role=image]");
    this.overlay = root.querySelector("[data-role=overlay]");
    this.resolution = 0;   // the longer side (0: no image yet)
    this.size = [0, 0];    // [width, height] of the model image
    this.pending = 0;
    this.mask = null;
    this.drag = null; // {mode: "move"|"paint", target, moved}
    this.cursor = null; // brush cursor in model coordinates
    this.keyCursor = null; // keyboard cursor (model coordinates) while the canvas has focus
    this.overlay.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.overlay.addEventListener("pointermove", (e) => this.onPointerMove(e));
    this.overlay.addEventListener("pointerup", (e) => this.onPointerUp(e));
    this.overlay.addEventListener("pointercancel", (e) => this.onPointerUp(e));
    this.overlay.addEventListener("pointerleave", () => {
      this.cursor = null;
      this.renderSoon();
    });
    this.overlay.addEventListener("contextmenu", (e) => this.onContextMenu(e));
    this.overlay.addEventListener("keydown", (e) => this.onKeyDown(e));
    this.overlay.addEventListener("focus", () => {
      if (!this.keyCursor && this.resolution) this.keyCursor = [(this.size[0] - 1) / 2, (this.size[1] - 1) / 2];
      this.renderSoon();
    });
    this.overlay.addEventListener("blur", () => this.renderSoon());
    new ResizeObserver(() => this.renderSoon()).observe(this.overlay);
  }

  /** The model image's size: a side, or its width and height (a non-square model: the stage
   * takes its aspect, so every model pixel stays square on screen). */
  setResolution(resolution, width = resolution, height = resolution) {
    if (width === this.size[0] && height === this.size[1]) return;
    this.resolution = Math.max(width, height);
    this.size = [width, height];
    this.image.width = width;
    this.image.height = height;
    this.mask = new MaskLayer(width, height);
    this.root.style.aspectRatio = `${width} / ${height}`;
    // a portrait image keeps the square stage's height: its width shrinks by the aspect
    this.root.style.width = height > width
      ? `calc(min(512px, calc(100vw - 40px), max(256px, calc(100vh - 200px))) * ${width / height})` : "";
    this.renderSoon();
  }

  /** Draw a decoded frame; the image canvas is at model resolution, CSS scales it. */
  drawFrame(bitmap) {
    if (bitmap.width !== this.size[0] || bitmap.height !== this.size[1]) {
      this.setResolution(Math.max(bitmap.width, bitmap.height), bitmap.width, bitmap.height);
    }
    const ctx = this.image.getContext("2d");
    ctx.drawImage(bitmap, 0, 0, this.size[0], this.size[1]);
  }

  /** Model coordinates of a pointer event. */
  eventToModel(e) {
    const rect = this.overlay.getBoundingClientRect();
    return toModel(e.clientX - rect.left, e.clientY - rect.top, rect.width, rect.height, this.size);
  }

  /** Pick radius in model pixels for the current display scale. */
  pickRadius() {
    const rect = this.overlay.getBoundingClientRect();
    return (PICK_RADIUS_CSS / Math.max(1, rect.width)) * this.size[0];
  }

  onPointerDown(e) {
    // mouse, pen and touch alike; a second finger does not start another edit
    if (!this.resolution || e.button !== 0 || !e.isPrimary) return;
    this.overlay.focus({ preventScroll: true });
    const s = this.store.get();
    const at = this.eventToModel(e);
    this.keyCursor = at;
    if (s.tool === "brush" || s.tool === "eraser") {
      this.mask.begin(at, s.brushRadius, s.tool === "eraser");
      this.drag = { mode: "paint" };
      this.store.set({ maskVisible: true });
    } else {
      const hit = pickPoint(s.pairs, at, this.pickRadius());
      if (hit) {
        this.drag = { mode: "move", target: hit, moved: false };
        this.store.set({ selected: hit });
      } else {
        const { pairs, selected, refused } = addPoint(s.pairs, at, this.actions.maxPairs);
        if (refused) {
          this.actions.onPairsFull();
          e.preventDefault();
          return;
        }
        this.drag = { mode: "move", target: selected, moved: true };
        this.store.set({ pairs, selected });
      }
    }
    this.overlay.setPointerCapture(e.pointerId);
    e.preventDefault();
    this.renderSoon();
  }

  onPointerMove(e) {
    if (!this.resolution) return;
    const s = this.store.get();
    const at = this.eventToModel(e);
    this.cursor = s.tool === "brush" || s.tool === "eraser" ? at : null;
    if (this.drag?.mode === "paint") {
      this.mask.extend(at, s.brushRadius, s.tool === "eraser");
    } else if (this.drag?.mode === "move") {
      this.drag.moved = true;
      this.store.set({ pairs: movePoint(s.pairs, this.drag.target, at) });
    }
    this.renderSoon();
  }

  onPointerUp(e) {
    if (!e.isPrimary) return;
    const drag = this.drag;
    this.drag = null;
    if (this.overlay.hasPointerCapture?.(e.pointerId)) this.overlay.releasePointerCapture(e.pointerId);
    if (!drag) return;
    if (drag.mode === "paint") {
      this.mask.end();
      this.actions.onMaskCommitted();
    } else if (drag.moved) {
      this.actions.onPointsCommitted();
    }
    this.renderSoon();
  }

  onContextMenu(e) {
    e.preventDefault();
    if (!this.resolution) return;
    const s = this.store.get();
    const hit = pickPoint(s.pairs, this.eventToModel(e), this.pickRadius());
    if (hit) this.deletePairAt(hit.index);
  }

  deletePairAt(index) {
    const s = this.store.get();
    this.store.set({ pairs: deletePair(s.pairs, index), selected: null });
    this.actions.onPointsCommitted();
    this.renderSoon();
  }

  /** Keyboard on the focused canvas: Delete removes, arrows nudge, Escape deselects. */
  onKeyDown(e) {
    const s = this.store.get();
    const sel = s.selected;
    if (e.key === "Delete" || e.key === "Backspace") {
      // the selected point, else the point under the keyboard cursor (placed with Enter, say)
      const hit = sel ?? (this.keyCursor ? pickPoint(s.pairs, this.keyCursor, 1.5) : null);
      if (hit) {
        e.preventDefault();
        this.deletePairAt(hit.index);
      }
      return;
    }
    if (e.key === "Escape") {
      this.store.set({ selected: null });
      this.renderSoon();
      return;
    }
    const nudge = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[e.key];
    const step = e.shiftKey ? 4 : 1;
    const moved = (p) => [clamp(p[0] + nudge[0] * step, 0, this.size[0] - 1), clamp(p[1] + nudge[1] * step, 0, this.size[1] - 1)];
    if (nudge && sel && s.pairs[sel.index]?.[sel.role]) {
      // arrows nudge the selected point
      e.preventDefault();
      this.store.set({ pairs: movePoint(s.pairs, sel, moved(s.pairs[sel.index][sel.role])) });
      this.actions.onPointsCommitted();
      this.renderSoon();
    } else if (nudge && this.keyCursor) {
      // with nothing selected they move the keyboard cursor...
      e.preventDefault();
      this.keyCursor = moved(this.keyCursor);
      this.renderSoon();
    } else if ((e.key === "Enter" || e.key === " ") && this.keyCursor) {
      // ...and Enter places a point (or paints a dab) there, as a click would
      e.preventDefault();
      if (s.tool === "brush" || s.tool === "eraser") {
        this.mask.begin(this.keyCursor, s.brushRadius, s.tool === "eraser");
        this.mask.end();
        this.store.set({ maskVisible: true });
        this.actions.onMaskCommitted();
      } else {
        // nothing gets selected, so the arrows go on moving the cursor (to the target, say)
        const added = addPoint(s.pairs, this.keyCursor, this.actions.maxPairs);
        if (added.refused) {
          this.actions.onPairsFull();
        } else {
          this.store.set({ pairs: added.pairs, selected: null });
          this.actions.onPointsCommitted();
        }
      }
      this.renderSoon();
    }
  }

  clearMask() {
    this.mask?.clear();
    this.renderSoon();
  }

  /** Show the server's mask (undo, redo, a history jump, another page). */
  async loadMask(b64, invert) {
    if (!this.mask) return;
    await this.mask.load(b64, invert);
    this.renderSoon();
  }

  /**
   * Redraw on the next animation frame, once however many state changes come before it (a burst
   * of clicks or events must not redraw the overlay each time).
   */
  renderSoon() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.render();
    });
  }

  /** Redraw the overlay: mask, arrows, handles (red), targets (blue), brush cursor. */
  render() {
    const canvas = this.overlay;
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(rect.width * dpr));
    const h = Math.max(1, Math.round(rect.height * dpr));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    if (!this.resolution) return;
    const s = this.store.get();
    if (s.maskVisible && this.mask) {
      this.mask.drawTinted(ctx, w, h, s.maskMode === "fixed" ? "rgba(120, 140, 255, 0.45)" : undefined);
    }
    const size = this.size;
    const scr = (p) => toScreen(p[0], p[1], w, h, size);
    const r = Math.max(4, 5 * dpr);
    const labels = !s.drag.running && Array.isArray(s.drag.distances);
    let k = 0;        // index among complete pairs (the server's numbering)
    s.pairs.forEach((pair, i) => {
      const hp = scr(pair.handle);
      if (pair.target) drawArrow(ctx, hp, scr(pair.target), r, dpr);
      const selected = s.selected?.index === i;
      drawDot(ctx, hp, r, HANDLE, selected && s.selected.role === "handle", dpr);
      if (!pair.target) return;
      drawDot(ctx, scr(pair.target), r, TARGET, selected && s.selected.role === "target", dpr);
      // after a drag: each pair's number and distance; a handle whose content was not found at
      // its target (tracking unsure) gets a dashed amber ring and a "?"
      const unsure = s.drag.unsure?.[k] === true;
      if (unsure) drawUnsure(ctx, hp, r, dpr);
      const d = s.drag.distances?.[k];
      if (labels && typeof d === "number" && w >= 200) {
        drawLabel(ctx, scr(pair.target), r, `${k + 1}: ${d.toFixed(1)} px${unsure ? " ?" : ""}`, dpr);
      }
      k += 1;
    });
    if (this.keyCursor && document.activeElement === canvas && !s.selected) {
      const [cx, cy] = scr(this.keyCursor);
      const arm = 8 * dpr;
      ctx.save();
      ctx.strokeStyle = "#ffd166";
      ctx.lineWidth = 1.5 * dpr;
      ctx.beginPath();
      ctx.moveTo(cx - arm, cy);
      ctx.lineTo(cx + arm, cy);
      ctx.moveTo(cx, cy - arm);
      ctx.lineTo(cx, cy + arm);
      ctx.stroke();
      ctx.restore();
    }
    if (this.cursor && (s.tool === "brush" || s.tool === "eraser")) {
      const c = scr(this.cursor);
      ctx.beginPath();
      ctx.arc(c[0], c[1], (s.brushRadius / size[0]) * w, 0, Math.PI * 2);
      ctx.lineWidth = dpr;
      ctx.strokeStyle = s.tool === "eraser" ? "#ffb703" : "#40c878";
      ctx.stroke();
    }
  }
}

function drawDot(ctx, [x, y], r, color, selected, dpr) {
  ctx.beginPath();
  ctx.arc(x, y, r, 0, Math.PI * 2);
  ctx.fillStyle = color;
  ctx.fill();
  ctx.lineWidth = (selected ? 2.5 : 1.5) * dpr;
  ctx.strokeStyle = selected ? "#ffd166" : "#fff";
  ctx.stroke();
}

function drawUnsure(ctx, [x, y], r, dpr) {
  ctx.save();
  ctx.setLineDash([3 * dpr, 2 * dpr]);
  ctx.lineWidth = 2 * dpr;
  ctx.strokeStyle = "#ffb703";
  ctx.beginPath();
  ctx.arc(x, y, r + 4 * dpr, 0, Math.PI * 2);
  ctx.stroke();
  ctx.restore();
}

function drawLabel(ctx, [x, y], r, text, dpr) {
  ctx.save();
  ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
  const pad = 2 * dpr;
  const width = ctx.measureText(text).width + 2 * pad;
  const height = 14 * dpr;
  const left = Math.min(Math.max(0, x + r + 2 * dpr), ctx.canvas.width - width);
  const top = Math.min(Math.max(0, y - height / 2), ctx.canvas.height - height);
  ctx.fillStyle = "rgba(0, 0, 0, 0.65)";
  ctx.fillRect(left, top, width, height);
  ctx.fillStyle = "#fff";
  ctx.textBaseline = "middle";
  ctx.fillText(text, left + pad, top + height / 2);
  ctx.restore();
}

function drawArrow(ctx, [x0, y0], [x1, y1], r, dpr) {
  const len = Math.hypot(x1 - x0, y1 - y0);
  if (len < 2 * r) return;
  const ux = (x1 - x0) / len;
  const uy = (y1 - y0) / len;
  const sx = x0 + ux * r;
  const sy = y0 + uy * r;
  const ex = x1 - ux * r;
  const ey = y1 - uy * r;
  const head = Math.min(10 * dpr, len / 3);
  ctx.save();
  ctx.strokeStyle = "rgba(255,255,255,0.95)";
  ctx.fillStyle = "rgba(255,255,255,0.95)";
  ctx.shadowColor = "rgba(0,0,0,0.7)";
  ctx.shadowBlur = 2 * dpr;
  ctx.lineWidth = 2 * dpr;
  ctx.beginPath();
  ctx.moveTo(sx, sy);
  ctx.lineTo(ex - ux * head * 0.6, ey - uy * head * 0.6);
  ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(ex, ey);
  ctx.lineTo(ex - ux * head - uy * head * 0.5, ey - uy * head + ux * head * 0.5);
  ctx.lineTo(ex - ux * head + uy * head * 0.5, ey - uy * head - ux * head * 0.5);
  ctx.closePath();
  ctx.fill();
  ctx.restore();
}
