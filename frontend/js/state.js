/**
 * The page's state at start: one object the store patches. Every module reads it; only the
 * controllers in ctl/ write it, from server events and user actions.
 */

/** The protocol's limit on handle/target pairs (docs/PROTOCOL.md, "Limits"). */
export const MAX_PAIRS = 128;

export const initialState = Object.freeze({
  conn: { state: "idle" },
  models: [],
  methods: { drag: [], directions: [] },
  /** the model whose tuned defaults `methods` holds (null: the methods' own defaults) */
  methodsModel: null,
  session: null,
  pairs: [],
  selected: null,
  /** the last click refused because MAX_PAIRS pairs are placed (shown, never silent) */
  pairsFull: false,
  tool: "points",
  /** "flexible": paint what may change; "fixed": paint what must stay */
  maskMode: "flexible",
  brushRadius: 4,
  maskVisible: true,
  maskPixels: 0,
  drag: {
    running: false, step: null, remaining: null, maxRemaining: null, stepsPerSecond: null, fps: null, reason: null,
    distances: null, idle: null, unsure: null,
  },
  /** the instant warp preview: null, or {shown, idle, seconds} while the page asks for / shows one */
  preview: null,
  /** the direction set the sliders belong to (the `directions` event, plus `entry`: where it was found) */
  directions: null,
  /** why sliders were cleared ("" when they were not) */
  directionsNote: "",
  sliders: [],
  committed: [],
  walkKind: "linear",
  /** a long computation the page waits for: null, or {op, method, elapsed, estimate} */
  computing: null,
  /** GET /api/directions/ready: which sets the server is finding in the background */
  precompute: null,
  lastFrame: null,
  frameCount: 0,
  framesByKind: {},
  /** recent sessions of this browser (recents.js) */
  recents: [],
  /** what the server can export (GET /api/health: {mp4}) */
  exports: {},
  notice: "",
  error: "",
});
