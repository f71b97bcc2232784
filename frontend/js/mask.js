/**
 * The editable region, painted at model resolution (one mask pixel per model
 * pixel), so what the user sees is exactly what the server receives.
 */

/** Binary mask bytes (1 = may change) from RGBA pixels: alpha above half counts. Pure. */
export function alphaToBinary(rgba) {
  const out = new Uint8Array(rgba.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = rgba[i * 4 + 3] > 127 ? 1 : 0;
  return out;
}

/** Points from a to b spaced at most `step` apart (brush strokes without gaps). Pure. */
export function strokePoints(a, b, step) {
  const d = Math.hypot(b[0] - a[0], b[1] - a[1]);
  const n = Math.max(1, Math.ceil(d / Math.max(step, 1e-6)));
  const pts = [];
  for (let i = 1; i <= n; i++) pts.push([a[0] + ((b[0] - a[0]) * i) / n, a[1] + ((b[1] - a[1]) * i) / n]);
  return pts;
}

export class MaskLayer {
  /** @param {number} width @param {number} [height] model image size (height defaults to width) */
  constructor(width, height = width) {
    this.width = width;
    this.height = height;
    this.canvas = document.createElement("canvas");
    this.canvas.width = width;
    this.canvas.height = height;
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.ctx.imageSmoothingEnabled = false;
    this.tint = document.createElement("canvas");
    this.tint.width = width;
    this.tint.height = height;
    this.last = null;
  }

  /** Paint (or erase) a disc of `radius` model pixels centred on a model point. */
  dab([x, y], radius, erase) {
    const ctx = this.ctx;
    ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(x + 0.5, y + 0.5, Math.max(0.5, radius), 0, Math.PI * 2);
    ctx.fill();
    ctx.globalCompositeOperation = "source-over";
  }

  begin(xy, radius, erase) {
    this.last = xy;
    this.dab(xy, radius, erase);
  }

  extend(xy, radius, erase) {
    if (!this.last) return this.begin(xy, radius, erase);
    for (const p of strokePoints(this.last, xy, Math.max(0.5, radius / 2))) this.dab(p, radius, erase);
    this.last = xy;
  }

  end() {
    this.last = null;
  }

  clear() {
    this.ctx.clearRect(0, 0, this.width, this.height);
  }

  /** Number of mask pixels set (0 = no mask). */
  count() {
    const bin = alphaToBinary(this.ctx.getImageData(0, 0, this.width, this.height).data);
    return bin.reduce((a, b) => a + b, 0);
  }

  /**
   * Base64 PNG (no data: prefix), white = may change, as set_mask expects; null when nothing is
   * painted. With `invert` (the "fixed area" mode) the paint marks what must stay, so the mask
   * sent is its complement.
   */
  toBase64Png(invert = false) {
    const [w, h] = [this.width, this.height];
    const painted = alphaToBinary(this.ctx.getImageData(0, 0, w, h).data);
    if (!painted.some((v) => v)) return null;
    const bin = invert ? painted.map((v) => 1 - v) : painted;
    const out = document.createElement("canvas");
    out.width = w;
    out.height = h;
    const octx = out.getContext("2d");
    const img = octx.createImageData(w, h);
    for (let i = 0; i < bin.length; i++) {
      const v = bin[i] ? 255 : 0;
      img.data.set([v, v, v, 255], i * 4);
    }
    octx.putImageData(img, 0, 0);
    return out.toDataURL("image/png").split(",", 2)[1];
  }

  /**
   * Show a mask the server holds (base64 PNG, white = may change; null = none). With `invert`
   * the paint is its complement (what must stay). Decoded from bytes, not from a data: URL.
   */
  async load(b64, invert = false) {
    const [w, h] = [this.width, this.height];
    let bin = new Uint8Array(w * h);
    if (b64) {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
      const scratch = document.createElement("canvas");
      scratch.width = w;
      scratch.height = h;
      const sctx = scratch.getContext("2d", { willReadFrequently: true });
      sctx.drawImage(bitmap, 0, 0, w, h);
      bitmap.close?.();
      const rgba = sctx.getImageData(0, 0, w, h).data;
      for (let i = 0; i < bin.length; i++) bin[i] = rgba[i * 4] > 127 ? 1 : 0;
      if (invert) bin = bin.map((v) => 1 - v);
    }
    const img = this.ctx.createImageData(w, h);
    for (let i = 0; i < bin.length; i++) if (bin[i]) img.data.set([255, 255, 255, 255], i * 4);
    this.ctx.putImageData(img, 0, 0);
  }

  /** Draw the mask as a translucent colour over a display canvas of size w x h. */
  drawTinted(ctx, w, h, color = "rgba(64, 200, 120, 0.45)") {
    const t = this.tint.getContext("2d");
    t.globalCompositeOperation = "copy";
    t.drawImage(this.canvas, 0, 0);
    t.globalCompositeOperation = "source-in";
    t.fillStyle = color;
    t.fillRect(0, 0, this.width, this.height);
    t.globalCompositeOperation = "source-over";
    ctx.save();
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.tint, 0, 0, w, h);
    ctx.restore();
  }
}
