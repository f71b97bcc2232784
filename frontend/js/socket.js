/**
 * The session websocket: hello, JSON events, binary frames with credit acks,
 * and reconnection with backoff. Knows the protocol, not the page.
 */

import { backoffDelay } from "./backoff.js";
import { parseFrame } from "./frames.js";

export const PROTOCOL_VERSION = 1;

/** Standard close codes in words (the server's own codes come with a reason). */
const CLOSE_REASONS = {
  1001: "the server is going away",
  1006: "connection lost",
  1011: "server error",
  1012: "the server is restarting",
  1013: "the server is overloaded",
};

/**
 * @param {{
 *   url: () => string,
 *   credits?: number,
 *   onEvent: (msg: object) => void,
 *   onFrame: (frame: object) => Promise<void>|void,
 *   onStatus: (status: {state: string, retryIn?: number, attempt?: number, reason?: string}) => void,
 * }} options
 */
export function createConnection({ url, credits = 2, onEvent, onFrame, onStatus }) {
  let ws = null;
  let attempt = 0;
  let retryTimer = null;
  let closedByUs = false;
  let rid = 0;

  function status(state, extra = {}) {
    onStatus({ state, ...extra });
  }

  function open() {
    clearTimeout(retryTimer);
    retryTimer = null;
    closedByUs = false;
    if (ws) {
      ws.onclose = null;
      ws.close();
    }
    status(attempt === 0 ? "connecting" : "reconnecting", { attempt });
    let socket;
    try {
      socket = new WebSocket(url());
    } catch (err) {
      scheduleRetry(String(err.message ?? err));
      return;
    }
    ws = socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      attempt = 0;
      status("open");
      send({ type: "hello", version: PROTOCOL_VERSION, credits });
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          onEvent({ type: "error", code: "invalid_message", message: "the server sent a message that is not JSON" });
          return;
        }
        onEvent(msg);
        return;
      }
      let frame;
      try {
        frame = parseFrame(event.data);
      } catch (err) {
        onEvent({ type: "error", code: "invalid_message", message: `bad frame: ${err.message}` });
        return;
      }
      // The credit goes back once the frame is drawn (or failed to draw), so a
      // slow page gets fewer, fresher frames instead of a queue.
      Promise.resolve()
        .then(() => onFrame(frame))
        .catch(() => {})
        .finally(() => send({ type: "ack", seq: frame.seq }));
    };
    socket.onclose = (event) => {
      if (ws !== socket) return;
      ws = null;
      if (closedByUs) {
        status("closed", { reason: "closed" });
        return;
      }
      if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
        const reason = { 4401: "access token missing or wrong", 4403: "origin refused by the server", 4404: "session not found" }[event.code];
        status("failed", { reason, code: event.code });
        return;
      }
      scheduleRetry(event.reason || CLOSE_REASONS[event.code] || `connection closed (${event.code})`);
    };
  }

  function scheduleRetry(reason) {
    const delay = backoffDelay(attempt);
    attempt += 1;
    status("waiting", { retryIn: delay, retryAt: Date.now() + delay, attempt, reason });
    retryTimer = setTimeout(open, delay);
  }

  /** Send one JSON message; returns its rid, or null when not connected. */
  function send(message) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return null;
    const withRid = message.type === "ack" || message.type === "hello" ? message : { rid: String(++rid), ...message };
    ws.send(JSON.stringify(withRid));
    return withRid.rid ?? null;
  }

  function close() {
    closedByUs = true;
    clearTimeout(retryTimer);
    if (ws) ws.close(1000, "page closed the session");
    else status("closed", { reason: "closed" });
  }

  return {
    open,
    send,
    close,
    /** Reconnect now, skipping any remaining backoff wait. */
    reconnectNow: () => {
      attempt = Math.max(attempt, 1);
      open();
    },
    isOpen: () => !!ws && ws.readyState === WebSocket.OPEN,
  };
}
