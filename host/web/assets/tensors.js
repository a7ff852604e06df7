// Tensors between the page, the Worker and jco's glue. Requests use `wasmops
// run`'s JSON ({inputs: [{name, shape, data}]}); `data` is typed here by the
// model's declared input type, refusing what `run` refuses with the same
// words, into typed arrays that cross to the Worker without a copy.

/** `{name, shape, data}` → `{name, shape: Uint32Array, data: {tag, val}}`
 * (the WIT tensor jco passes to `predict`); `types` maps input names to
 * their declared types (`float32` when not declared). */
export function toTensor(t, types) {
  if (typeof t?.name !== "string" || !Array.isArray(t.shape) || !(Array.isArray(t.data) || ArrayBuffer.isView(t.data))) {
    throw new Error('each input needs a "name", a "shape" and "data"');
  }
  if (!t.shape.every((d) => Number.isInteger(d) && d >= 0 && d < 2 ** 32)) {
    throw new Error(`input \`${t.name}\`: the shape must be whole numbers`);
  }
  const bad = (i, what) => new Error(`input \`${t.name}\` element ${i}: expected ${what}, got ${JSON.stringify(t.data[i])}`);
  const type = types[t.name] ?? "float32";
  const n = t.data.length;
  let data;
  if (type === "text") {
    const val = Array.from(t.data);
    val.forEach((x, i) => {
      if (typeof x !== "string") throw bad(i, "a string");
    });
    data = { tag: "text", val };
  } else if (type === "int64" || type === "int32") {
    // Copies: the buffers are transferred, and the caller's arrays stay theirs.
    if (t.data instanceof BigInt64Array) data = { tag: "int64", val: t.data.slice() };
    else {
      const val = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        const x = t.data[i];
        if (!Number.isSafeInteger(x)) throw bad(i, "an integer");
        val[i] = BigInt(x);
      }
      data = { tag: "int64", val };
    }
  } else if (t.data instanceof Float32Array) {
    data = { tag: "float32", val: t.data.slice() };
  } else {
    // JSON has no NaN: null (or "NaN") marks a missing value.
    const val = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const x = t.data[i];
      if (typeof x === "number") val[i] = x;
      else if (x === null || (typeof x === "string" && x.toLowerCase() === "nan")) val[i] = NaN;
      else throw bad(i, "a number");
    }
    data = { tag: "float32", val };
  }
  return { name: t.name, shape: Uint32Array.from(t.shape), data };
}

/** A WIT tensor from `predict` → `run`'s JSON form (NaN as null). */
export function fromTensor(t) {
  const { tag, val } = t.data;
  const data =
    tag === "float32"
      ? Array.from(val, (x) => (Number.isFinite(x) ? x : null))
      : tag === "int64"
        ? Array.from(val, Number)
        : Array.from(val);
  return { name: t.name, shape: Array.from(t.shape), data };
}

/** The buffers of typed tensors, to transfer rather than copy. */
export function buffers(tensors) {
  return tensors.flatMap((t) => [t.shape.buffer, ...(ArrayBuffer.isView(t.data.val) ? [t.data.val.buffer] : [])]);
}
