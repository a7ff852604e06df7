// The model's module Worker: an engine (engine.js) behind messages, so a
// slow prediction never blocks the page.
// Messages in: {id, op: "load"|"predict"|"flush", args}; out: {id, ok, result|error}.
import { createEngine } from "./engine.js";

const engine = createEngine();

self.onmessage = async (event) => {
  const { id, op, args } = event.data;
  try {
    const result =
      op === "load" ? await engine.load(...args) : op === "predict" ? engine.predict(args[0]) : op === "flush" ? await engine.flush() : null;
    if (result === null) throw new Error(`unknown operation ${op}`);
    self.postMessage({ id, ok: true, result });
  } catch (e) {
    self.postMessage({ id, ok: false, error: String(e?.message ?? e) });
  }
};
