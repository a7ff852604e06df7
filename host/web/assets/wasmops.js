// The page API of a wasmops bundle. The model runs in a module Worker, so a
// slow prediction never blocks the page:
//
//   import { load } from "./wasmops.js";
//   const model = await load("model.wasm", trust);   // verified, or throws why not
//   model.metadata();        // {name, version, inputs, outputs, preprocessing}
//   await model.predict({inputs: [{name: "X", shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2]}]});
//     // → {outputs: [{name, shape, data}], ms}
//
// `trust` is a trust document (`wasmops web` writes the demo page's as
// trust.json), an object or the URL of one. Nothing runs before the
// signature, trust chain and claims check out.
//
// `load(url, trust, {inline: true})` runs the model on the calling thread
// instead (the same engine, engine.js): no Worker hop per prediction (~1 ms
// for a 224×224 image), for pages that run in a Worker of their own or
// want onnxruntime-web's default threading; a slow prediction then blocks
// that thread.
//
// Telemetry is off unless asked for: `load(url, trust, {telemetry:
// {coordinator, device, token, every_s}})` (the demo page reads it from
// config.json, written by `wasmops web --coordinator …`). Predictions are
// then counted as a device counts them, answers carry `prediction_ids`, and
// reports go to the coordinator every `every_s` seconds, when the page is
// hidden, and on `model.flush()`.

import { buffers, toTensor } from "./tensors.js";

/** `run`'s JSON typed by the model's declared inputs. */
function typed(request, info) {
  if (!Array.isArray(request?.inputs)) throw new Error('expected {"inputs": [{"name", "shape", "data"}]}');
  const types = Object.fromEntries(info.inputs.map((s) => [s.name, s.type]));
  return request.inputs.map((t) => toTensor(t, types));
}

/** The same API on the calling thread. */
class InlineModel {
  #engine;
  constructor(engine) {
    this.#engine = engine;
  }
  start(url, trust, options) {
    return this.#engine.load(url, trust, options);
  }
  metadata() {
    return this.loaded.info;
  }
  async predict(request) {
    return this.#engine.predict({ inputs: typed(request, this.loaded.info) });
  }
  flush() {
    return this.#engine.flush();
  }
  close() {
    this.#engine.close();
  }
}

class Model {
  #worker;
  #next = 0;
  #waiting = new Map();
  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      const done = this.#waiting.get(data.id);
      this.#waiting.delete(data.id);
      if (done) data.ok ? done.resolve(data.result) : done.reject(new Error(data.error));
    };
    worker.onerror = (e) => {
      for (const done of this.#waiting.values()) done.reject(new Error(e.message || "the model worker failed"));
      this.#waiting.clear();
    };
  }
  start(url, trust, options) {
    return this.call("load", [url, trust, options]);
  }
  call(op, args, transfer = []) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ id, op, args }, transfer);
    });
  }
  /** {name, version, inputs, outputs, preprocessing}: inputs and outputs as
   * [{name, type, shape: ["N", "4"]}]. */
  metadata() {
    return this.loaded.info;
  }
  /** `wasmops run`'s JSON in and out; `ms` is the time inside the model.
   * Inputs are typed here, so the Worker gets typed arrays, moved not copied. */
  async predict(request) {
    const inputs = typed(request, this.loaded.info);
    return this.call("predict", [{ inputs }], buffers(inputs));
  }
  /** Sends the telemetry window now: {sent, pending, dropped, error}. */
  flush() {
    return this.call("flush", []);
  }
  close() {
    this.#worker.terminate();
  }
}

/** Fetches, verifies and instantiates the component at `url`. Resolves to a
 * model whose `loaded` holds the verdict (signer, claims), the bytes fetched
 * and the time of each step; rejects with the reason a component is refused. */
export async function load(url, trust, options = {}) {
  if (typeof trust === "string") {
    const response = await fetch(trust);
    if (!response.ok) throw new Error(`${trust}: HTTP ${response.status}`);
    trust = await response.json();
  }
  const href = new URL(url, globalThis.document?.baseURI ?? location.href).href;
  let model;
  if (options.inline) {
    const { createEngine } = await import("./engine.js");
    model = new InlineModel(createEngine());
  } else {
    model = new Model(new Worker(new URL("./worker.js", import.meta.url), { type: "module" }));
  }
  try {
    model.loaded = await model.start(href, trust, options);
  } catch (e) {
    model.close();
    throw e;
  }
  if (options.telemetry) {
    // A page going away sends what it counted (fetch with keepalive outlives it).
    globalThis.document?.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") model.flush().catch(() => {});
    });
  }
  return model;
}

/** An image on a canvas as the `[1, H, W, 3]` pixel tensor (0..255) image
 * pipelines take; `name` is the model input's name. */
export function canvasTensor(canvas, name) {
  const { width, height } = canvas;
  const rgba = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  const data = new Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4) {
    data[j++] = rgba[i];
    data[j++] = rgba[i + 1];
    data[j++] = rgba[i + 2];
  }
  return { name, shape: [1, height, width, 3], data };
}
