// Opens a `wasmops web` bundle's demo page in headless Chromium (Debian's,
// driven by playwright-core) and reports what happened, as JSON on stdout:
//   node run_bundle.mjs URL [--input FILE.json [--repeat N]] [--bad FILE.json]
//                           [--canvas INPUT WIDTH HEIGHT] [--flush] [--inline]
// → {"status": "accepted"|"refused", "text": the status line, "info",
//    "api": outputs of model.predict(input), "form": outputs of the page's
//    form filled with the same input, "canvas": {input, outputs} of a drawn
//    image, "bad": the error of each request in --bad (a JSON array), then
//    "after_bad": outputs of the good input again, "errors": console and
//    page errors, "external": requests that left the bundle's origin,
//    "inline": outputs of the same input on a model loaded with
//    {inline: true} (with --inline), "prediction_ids": the ids of each API prediction (N of them with
//    --repeat N) when the page reports telemetry, "flush": what
//    model.flush() said at the end}
// The Rust test decides what is right; this only drives and looks.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const [url, ...rest] = process.argv.slice(2);
if (!url) {
  console.error("usage: node run_bundle.mjs URL [--input FILE.json] [--canvas INPUT WIDTH HEIGHT]");
  process.exit(2);
}
const flag = (name, n = 1) => {
  const i = rest.indexOf(name);
  return i < 0 ? null : rest.slice(i + 1, i + 1 + n);
};
const input = flag("--input") && JSON.parse(readFileSync(flag("--input")[0], "utf8"));
const canvas = flag("--canvas", 3);
const bad = flag("--bad") && JSON.parse(readFileSync(flag("--bad")[0], "utf8"));
const repeat = Number(flag("--repeat")?.[0] ?? 1);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = { errors: [], external: [] };
try {
  const page = await browser.newPage();
  const origin = new URL(url).origin;
  page.on("console", (m) => m.type() === "error" && out.errors.push(m.text()));
  page.on("pageerror", (e) => out.errors.push(String(e)));
  page.on("request", (r) => new URL(r.url()).origin === origin || out.external.push(r.url()));
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => window.wasmops !== undefined, null, { timeout: 120_000 });
  Object.assign(
    out,
    await page.evaluate(() => ({
      status: document.querySelector("#status").className,
      text: document.querySelector("#status").innerText,
      info: window.wasmops.model?.metadata() ?? null,
    })),
  );
  if (out.status === "accepted" && input) {
    const answers = await page.evaluate(async ([req, n]) => {
      const all = [];
      for (let i = 0; i < n; i++) all.push(await window.wasmops.model.predict(req));
      return all;
    }, [input, repeat]);
    out.api = answers[0].outputs;
    out.prediction_ids = answers.map((a) => a.prediction_ids ?? null);
    // The page's own form, filled with the same numbers.
    for (const t of input.inputs) {
      await page.fill(`textarea[data-input="${t.name}"]`, JSON.stringify(t.data));
    }
    await page.click("button[type=submit]");
    await page.waitForSelector("#outputs:not([hidden])");
    const text = await page.innerText("#outputs");
    try {
      out.form = JSON.parse(text).outputs;
    } catch {
      out.form = text;
    }
  }
  if (out.status === "accepted" && input && rest.includes("--inline")) {
    out.inline = await page.evaluate(async (req) => {
      const { load } = await import(new URL("wasmops.js", location.href).href);
      const model = await load("model.wasm", "trust.json", { inline: true });
      try {
        return (await model.predict(req)).outputs;
      } finally {
        model.close();
      }
    }, input);
  }
  if (out.status === "accepted" && bad) {
    out.bad = await page.evaluate(async (requests) => {
      const said = [];
      for (const r of requests) {
        try {
          await window.wasmops.model.predict(r);
          said.push(null);
        } catch (e) {
          said.push(e.message);
        }
      }
      return said;
    }, bad);
    if (input) out.after_bad = (await page.evaluate((req) => window.wasmops.model.predict(req), input)).outputs;
  }
  if (out.status === "accepted" && canvas) {
    const [name, width, height] = canvas;
    out.canvas = await page.evaluate(
      async ([name, width, height]) => {
        const c = Object.assign(document.createElement("canvas"), { width, height });
        const g = c.getContext("2d");
        // A deterministic picture: a gradient, a disc and a bar.
        const grad = g.createLinearGradient(0, 0, width, height);
        grad.addColorStop(0, "#1e3c72");
        grad.addColorStop(1, "#f7b733");
        g.fillStyle = grad;
        g.fillRect(0, 0, width, height);
        g.fillStyle = "#e52d27";
        g.beginPath();
        g.arc(width * 0.4, height * 0.5, Math.min(width, height) * 0.25, 0, 2 * Math.PI);
        g.fill();
        g.fillStyle = "#ffffff";
        g.fillRect(width * 0.6, height * 0.2, width * 0.1, height * 0.6);
        const tensor = window.wasmops.canvasTensor(c, name);
        const { outputs } = await window.wasmops.model.predict({ inputs: [tensor] });
        return { input: { inputs: [tensor] }, outputs };
      },
      [name, Number(width), Number(height)],
    );
  }
  if (out.status === "accepted" && rest.includes("--flush")) {
    out.flush = await page.evaluate(() => window.wasmops.model.flush());
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
