// The model engine: fetch → verify → compile the verified core modules →
// instantiate jco's glue with the browser WASI shims → predict. Each engine
// holds one model; it runs wherever it is made: in the module Worker
// (worker.js, the default, so a slow prediction never blocks the page) or
// on the page's own thread (`load(…, {inline: true})`, as onnxruntime-web
// runs unless proxied).
// Tensors arrive typed (tensors.js: `wasmops run`'s JSON made into typed
// arrays) or as that JSON, and leave as `run`'s JSON, so a page's answer
// compares with the host's.
//
// Telemetry (off unless `load` gets {telemetry: {coordinator, device, token}}):
// each prediction is counted by the device agent's own code (verifier.wasm,
// `reporter`); every `every_s` the window becomes numbered reports, posted to
// the coordinator's `POST /v1/devices/{device}/telemetry` and kept until it
// acknowledges them (a 5xx or a lost network: sent again next time; a 4xx:
// refused for good, dropped and counted in the next report).
import { reporter, verify } from "./verifier.js";
import { fromTensor, toTensor } from "./tensors.js";
import * as cli from "./shim/cli.js";
import * as clocks from "./shim/clocks.js";
import * as filesystem from "./shim/filesystem.js";
import * as io from "./shim/io.js";
import * as random from "./shim/random.js";

const shims = { cli, clocks, filesystem, io, random };

// `wasi:cli/environment@0.2.3` → shims.cli.environment
function wasiImports(names) {
  const out = {};
  for (const name of names) {
    const m = /^wasi:([a-z-]+)\/([a-z-]+)(@.*)?$/.exec(name);
    const iface = m && shims[m[1]]?.[m[2].replace(/-([a-z])/g, (_, c) => c.toUpperCase())];
    if (!iface) throw new Error(`the component imports ${name}, which a browser does not provide`);
    out[name] = iface;
  }
  return out;
}

const dims = (shape) => shape.map((d) => (d.tag === "fixed" ? String(d.val) : d.val));
const TYPES = { boolean: "bool" };
const specs = (list) => list.map((s) => ({ name: s.name, type: TYPES[s.elementType] ?? s.elementType, shape: dims(s.shape) }));

// `p` and 24 hex digits (96 random bits), as the agent makes them.
function predictionId() {
  const raw = crypto.getRandomValues(new Uint8Array(12));
  return "p" + Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Reports kept for resending at most; past that the oldest is dropped and counted.
const MAX_PENDING = 64;

const livePredictions = (r) => r.versions.filter((v) => v.role === "live").reduce((n, v) => n + v.predictions, 0);

/** A new engine: {load(url, trust, options), predict(request), flush(), close()}. */
export function createEngine() {
  let model = null;
  let info = null;
  let telemetry = null;
  let flushing = null;
  let timer = null;

  async function load(url, trust, options = {}) {
    const t0 = performance.now();
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const t1 = performance.now();
    const verdict = await verify(bytes, trust);
    if (verdict.status !== "accepted") throw new Error(`refused: ${verdict.reason}`);
    const t2 = performance.now();
    const manifest = await (await fetch(new URL("./model/modules.json", import.meta.url))).json();
    const glue = await import("./model/model.js");
    const instance = await glue.instantiate((file) => {
      const index = manifest.cores[file];
      if (index === undefined || !verdict.modules[index]) throw new Error(`no verified core module for ${file}`);
      const [offset, length] = verdict.modules[index];
      return WebAssembly.compile(bytes.subarray(offset, offset + length));
    }, wasiImports(manifest.imports));
    model = instance.model ?? instance["wasmops:model/model@0.1.0"];
    const raw = model.metadata();
    info = {
      name: raw.name,
      version: raw.version,
      inputs: specs(raw.inputs),
      outputs: specs(raw.outputs),
      preprocessing: raw.preprocessing,
    };
    const t3 = performance.now();
    warmUp(raw.inputs);
    const t4 = performance.now();
    if (options.telemetry) await startTelemetry(options.telemetry, verdict.claims?.profile ?? null);
    const t5 = performance.now();
    const { modules, ...shown } = verdict;
    return {
      info,
      verdict: shown,
      bytes: bytes.length,
      ms: { fetch: t1 - t0, verify: t2 - t1, instantiate: t3 - t2, warm_up: t4 - t3, total: t5 - t0 },
    };
  }

  // One prediction on made-up zeros (named dimensions as 1) before the page's
  // first: the engine compiles the model's code on its first call, so this moves
  // that cost into `load` instead of the user's first request. Not counted in
  // telemetry; a model that refuses zeros (or has inputs zeros cannot stand for)
  // is simply not warmed.
  function warmUp(inputs) {
    const zeros = {
      float32: (n) => ({ tag: "float32", val: new Float32Array(n) }),
      int64: (n) => ({ tag: "int64", val: new BigInt64Array(n) }),
      int32: (n) => ({ tag: "int64", val: new BigInt64Array(n) }),
      text: (n) => ({ tag: "text", val: new Array(n).fill("") }),
    };
    if (!inputs.every((s) => zeros[s.elementType])) return;
    const tensors = inputs.map((s) => {
      const shape = s.shape.map((d) => (d.tag === "fixed" ? Number(d.val) : 1));
      return { name: s.name, shape: Uint32Array.from(shape), data: zeros[s.elementType](shape.reduce((a, b) => a * b, 1)) };
    });
    try {
      model.predict(tensors);
    } catch {
      // Refused zeros: the first real prediction compiles instead.
    }
  }

  function predict(request) {
    if (!model) throw new Error("no model loaded");
    const t0 = performance.now();
    let inputs = [];
    let outputs = null;
    try {
      if (!Array.isArray(request?.inputs)) throw new Error('expected {"inputs": [{"name", "shape", "data"}]}');
      // Typed by the page already (wasmops.js), or typed here.
      const types = Object.fromEntries(info.inputs.map((s) => [s.name, s.type]));
      inputs = request.inputs.map((t) => (t.data?.tag ? t : toTensor(t, types)));
      outputs = model.predict(inputs);
    } catch (e) {
      telemetry?.record(inputs, null, [], performance.now() - t0);
      // A refused input comes back as the WIT predict-error variant.
      if (e && typeof e.tag === "string") throw new Error(`${e.tag}${e.val ? `: ${e.val}` : ""}`);
      throw e;
    }
    const ms = performance.now() - t0;
    const result = { outputs: outputs.map(fromTensor), ms };
    if (telemetry) {
      // One id per row, as a device gives: what an outcome is posted against later.
      const rows = outputs[0]?.shape[0] ?? 1;
      result.prediction_ids = Array.from({ length: rows }, predictionId);
      telemetry.record(inputs, outputs, result.prediction_ids, ms);
    }
    return result;
  }

  async function startTelemetry(config, profile) {
    const { coordinator, device, token } = config;
    if (typeof coordinator !== "string" || typeof device !== "string" || typeof token !== "string") {
      throw new Error("telemetry needs {coordinator, device, token}");
    }
    const stream = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
    const counts = await reporter({ device, stream, profile, sample_rows: config.sample_rows ?? 0 });
    const url = `${coordinator.replace(/\/+$/, "")}/v1/devices/${encodeURIComponent(device)}/telemetry`;
    telemetry = {
      url,
      token,
      counts,
      pending: [],
      dropped: { reports: 0, predictions: 0 },
      lastError: null,
      // Counting never fails a prediction: a problem shows in the next flush.
      record: (inputs, outputs, ids, latencyMs) => {
        try {
          counts.record(inputs, outputs, { model: info.name, version: info.version, ids }, latencyMs);
        } catch (e) {
          telemetry.lastError = `telemetry: cannot count a prediction: ${e.message}`;
        }
      },
    };
    timer = setInterval(() => flush().catch(() => {}), Math.max(1, config.every_s ?? 10) * 1000);
  }

  function drop(report) {
    telemetry.dropped.reports += 1;
    telemetry.dropped.predictions += livePredictions(report);
  }

  /** Closes the window and sends what is pending, oldest first. */
  async function flush() {
    if (!telemetry) return { sent: 0, pending: 0, dropped: 0, error: "telemetry is off" };
    flushing = (flushing ?? Promise.resolve()).then(send, send);
    return flushing;
  }

  async function send() {
    const t = telemetry;
    t.pending.push(...t.counts.take());
    while (t.pending.length > MAX_PENDING) drop(t.pending.shift());
    let sent = 0;
    while (t.pending.length) {
      const report = { ...t.pending[0], dropped_reports: t.dropped.reports, dropped_predictions: t.dropped.predictions };
      const body = JSON.stringify(report);
      let response;
      try {
        response = await fetch(t.url, {
          method: "POST",
          headers: { authorization: `Bearer ${t.token}`, "content-type": "application/json" },
          body,
          // Outlives a closing page; browsers allow it for bodies up to 64 KiB.
          keepalive: body.length < 60_000,
        });
      } catch (e) {
        t.lastError = `telemetry: ${e.message}`;
        break;
      }
      if (response.ok) {
        const ack = await response.json();
        if (!ack.seqs?.includes(report.seq)) {
          t.lastError = `telemetry report ${report.seq} was not acknowledged; sent again later`;
          break;
        }
        t.pending = t.pending.filter((r) => !ack.seqs.includes(r.seq));
        sent += 1;
        t.lastError = null;
      } else if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
        // Refused for good (the coordinator says why): never resent.
        t.lastError = `telemetry report ${report.seq} refused: ${(await response.json().catch(() => ({}))).error ?? response.status}`;
        drop(t.pending.shift());
      } else {
        t.lastError = `telemetry: HTTP ${response.status}; sent again later`;
        break;
      }
    }
    return { sent, pending: t.pending.length, dropped: t.dropped.reports, error: t.lastError };
  }

  /** Stops the telemetry timer (a Worker's engine ends with its Worker). */
  function close() {
    clearInterval(timer);
    model = null;
  }

  return { load, predict, flush, close };
}
