// Glue of verifier.wasm (host/web/verifier, wasm32-unknown-unknown): the
// host's trust check (signature, trust chain, claims) and the device agent's
// telemetry counting. Plain C ABI: copy bytes in, read JSON out.
let exports = null;

async function verifier() {
  if (!exports) {
    const response = await fetch(new URL("./verifier.wasm", import.meta.url));
    if (!response.ok) throw new Error(`verifier.wasm: HTTP ${response.status}`);
    const { instance } = await WebAssembly.instantiateStreaming(response, {});
    exports = instance.exports;
  }
  return exports;
}

function copyIn(v, bytes) {
  const ptr = v.wasmops_alloc(bytes.length);
  new Uint8Array(v.memory.buffer, ptr, bytes.length).set(bytes);
  return ptr;
}

/** Checks `bytes` (the signed component) against `trust` (a PortableTrust
 * document, object or JSON text) as of now. Resolves to the verdict:
 * {status: "accepted", sha256, signer, delegation, claims, modules} or
 * {status: "refused", reason}. */
export async function verify(bytes, trust) {
  const v = await verifier();
  const text = new TextEncoder().encode(typeof trust === "string" ? trust : JSON.stringify(trust));
  const wasm = copyIn(v, bytes);
  const doc = copyIn(v, text);
  const out = v.wasmops_verify(wasm, bytes.length, doc, text.length, Date.now() / 1000);
  v.wasmops_free(wasm, bytes.length);
  v.wasmops_free(doc, text.length);
  return readResult(v, out);
}

function readResult(v, out) {
  const len = new DataView(v.memory.buffer).getUint32(out, true);
  const json = new TextDecoder().decode(new Uint8Array(v.memory.buffer, out + 4, len));
  v.wasmops_free(out, len + 4);
  return JSON.parse(json);
}

function withBytes(v, bytes, f) {
  const ptr = copyIn(v, bytes);
  try {
    return f(ptr, bytes.length);
  } finally {
    v.wasmops_free(ptr, bytes.length);
  }
}

const KINDS = { float32: 0, int64: 1, text: 2 };

/** The page's telemetry window: the device agent's counting code
 * (wasmops-counting, compiled into verifier.wasm), so a browser's
 * predictions are counted, binned and reported exactly as a device's.
 * `config`: {device, stream, profile (the claims' profile or null),
 * sample_rows}. */
export async function reporter(config) {
  const v = await verifier();
  const text = new TextEncoder().encode(JSON.stringify(config));
  const handle = withBytes(v, text, (ptr, len) => v.wasmops_reporter_new(ptr, len, Date.now()));
  if (!handle) throw new Error("telemetry: the reporter refused its configuration");
  const stage = (output, t) => {
    const name = new TextEncoder().encode(t.name);
    const shape = new Uint8Array(Uint32Array.from(t.shape).buffer);
    const { tag } = t.data;
    let { val } = t.data;
    if (tag === "float32" && !(val instanceof Float32Array)) val = Float32Array.from(val);
    if (tag === "int64" && !(val instanceof BigInt64Array)) val = BigInt64Array.from(val, BigInt);
    const data = tag === "text" ? new TextEncoder().encode(JSON.stringify(Array.from(val))) : new Uint8Array(val.buffer, val.byteOffset, val.byteLength);
    withBytes(v, name, (n, nl) =>
      withBytes(v, shape, (s) => withBytes(v, data, (d, dl) => v.wasmops_reporter_tensor(handle, output, n, nl, s, t.shape.length, KINDS[tag] ?? 3, d, dl))),
    );
  };
  return {
    /** One prediction: WIT tensors in and out (`outputs` null when it
     * failed), `meta` {model, version, ids}, the time it took. */
    record(inputs, outputs, meta, latencyMs) {
      for (const t of inputs) stage(0, t);
      for (const t of outputs ?? []) stage(1, t);
      const m = new TextEncoder().encode(JSON.stringify(meta));
      withBytes(v, m, (p, l) => v.wasmops_reporter_record(handle, p, l, latencyMs, outputs ? 1 : 0, Date.now()));
    },
    /** Closes the window: its numbered reports (none when idle). */
    take() {
      return readResult(v, v.wasmops_reporter_take(handle, Date.now()));
    },
  };
}
