// Glue of verifier.wasm: the host's trust check (signature, trust chain,
// claims) compiled to wasm32-unknown-unknown (host/web/verifier). Plain C ABI:
// copy the component and the trust document in, read a JSON verdict out.
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
  const len = new DataView(v.memory.buffer).getUint32(out, true);
  const json = new TextDecoder().decode(new Uint8Array(v.memory.buffer, out + 4, len));
  v.wasmops_free(out, len + 4);
  return JSON.parse(json);
}
