// Transpiles a model component for the browser (run by `wasmops web`):
//   node transpile.mjs COMPONENT.wasm OUT_DIR
// writes OUT_DIR/model.js (jco's glue, instantiated by the worker with the
// imports it passes) and OUT_DIR/model.core*.wasm, and prints JSON on stdout:
// {"files": [...], "imports": [...], "exports": [...]}.
// Every core module becomes a file (no base64 inlining): `wasmops web` maps
// each to its section of the signed component and ships none of them, so the
// page compiles the verified bytes.
import { transpile } from "@bytecodealliance/jco-transpile";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";

const [component, outDir] = process.argv.slice(2);
if (!component || !outDir) {
  console.error("usage: node transpile.mjs COMPONENT.wasm OUT_DIR");
  process.exit(2);
}
const { files, imports, exports } = await transpile(component, {
  name: "model",
  instantiation: "async",
  outDir,
  base64Cutoff: 0,
  emitTypescriptDeclarations: false,
  nodejsCompat: false,
  noComponentErrorWrapping: true,
  // 239 → 124 KB of glue for the model guest, the same code.
  minify: true,
});
const written = [];
for (const [path, bytes] of Object.entries(files)) {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  written.push(relative(outDir, path));
}
console.log(JSON.stringify({ files: written.sort(), imports, exports }));
