/**
 * Binary frame header (docs/PROTOCOL.md, "Frames"): 12 bytes, then JPEG bytes.
 * Pure: parsing is kept apart from drawing so it can be unit-tested in node.
 */

export const FRAME_HEADER_BYTES = 12;
export const FRAME_KINDS = Object.freeze(["state", "drag", "walk", "invert", "preview"]);

/**
 * Split one binary websocket message into its header fields and image bytes.
 * @param {ArrayBuffer} buffer
 * @returns {{kind: string, kindCode: number, version: number, seq: number, step: number, image: Uint8Array}}
 * @throws {Error} when the message is too short or lacks the "DW" magic (so a
 *   protocol mismatch is reported instead of drawing garbage).
 */
export function parseFrame(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < FRAME_HEADER_BYTES) {
    throw new Error("frame too short for its 12-byte header");
  }
  const view = new DataView(buffer);
  if (view.getUint8(0) !== 0x44 || view.getUint8(1) !== 0x57) {
    throw new Error("frame lacks the DW magic");
  }
  const kindCode = view.getUint8(3);
  return {
    version: view.getUint8(2),
    kindCode,
    kind: FRAME_KINDS[kindCode] ?? `kind${kindCode}`,
    seq: view.getUint32(4, false),
    step: view.getUint32(8, false),
    image: new Uint8Array(buffer, FRAME_HEADER_BYTES),
  };
}

/** Build a frame (used by unit tests and handy for debugging a client). */
export function buildFrame({ kindCode = 0, seq = 0, step = 0, version = 1 }, image = new Uint8Array()) {
  const out = new Uint8Array(FRAME_HEADER_BYTES + image.length);
  const view = new DataView(out.buffer);
  out[0] = 0x44;
  out[1] = 0x57;
  view.setUint8(2, version);
  view.setUint8(3, kindCode);
  view.setUint32(4, seq >>> 0, false);
  view.setUint32(8, step >>> 0, false);
  out.set(image, FRAME_HEADER_BYTES);
  return out.buffer;
}
