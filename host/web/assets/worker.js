// The model's module Worker: fetch → verify → compile the verified core
// modules → instantiate jco's glue with the browser WASI shims → predict.
// Messages in: {id, op: "load"|"predict", args}; out: {id, ok, result|error}.
// Tensors arrive typed by wasmops.js (tensors.js: `wasmops run`'s JSON made
// into transferable typed arrays) and leave as `run`'s JSON, so a page's
// answer compares with the host's.
import { verify } from "./verifier.js";
import { fromTensor, toTensor } from "./tensors.js";
import * as cli from "./shim/cli.js";
import * as clocks from "./shim/clocks.js";
import * as filesystem from "./shim/filesystem.js";
import * as io from "./shim/io.js";
import * as random from "./shim/random.js";

const shims = { cli, clocks, filesystem, io, random };
let model = null;
let info = null;

self.onmessage = async (event) => {
  const { id, op, args } = event.data;
  try {
    const result = op === "load" ? await load(...args) : op === "predict" ? predict(args[0]) : null;
    if (result === null) throw new Error(`unknown operation ${op}`);
    self.postMessage({ id, ok: true, result });
  } catch (e) {
    self.postMessage({ id, ok: false, error: String(e?.message ?? e) });
  }
};

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

async function load(url, trust) {
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
  const { modules, ...shown } = verdict;
  return {
    info,
    verdict: shown,
    bytes: bytes.length,
    ms: { fetch: t1 - t0, verify: t2 - t1, instantiate: t3 - t2, total: t3 - t0 },
  };
}

function predict(request) {
  if (!model) throw new Error("no model loaded");
  if (!Array.isArray(request?.inputs)) throw new Error('expected {"inputs": [{"name", "shape", "data"}]}');
  // Typed by the page already (wasmops.js), or typed here.
  const types = Object.fromEntries(info.inputs.map((s) => [s.name, s.type]));
  const inputs = request.inputs.map((t) => (t.data?.tag ? t : toTensor(t, types)));
  const t0 = performance.now();
  let outputs;
  try {
    outputs = model.predict(inputs);
  } catch (e) {
    // A refused input comes back as the WIT predict-error variant.
    if (e && typeof e.tag === "string") throw new Error(`${e.tag}${e.val ? `: ${e.val}` : ""}`);
    throw e;
  }
  const ms = performance.now() - t0;
  return { outputs: outputs.map(fromTensor), ms };
}
