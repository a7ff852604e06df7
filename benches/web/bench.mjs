// Drives bench.html in Debian's headless chromium (playwright-core) and
// prints its result as JSON, with the bytes each side downloaded (per
// response, the Worker's fetches included):
//   node bench.mjs URL/bench.html
import { chromium } from "playwright-core";

const url = process.argv[2];
if (!url) {
  console.error("usage: node bench.mjs URL/bench.html");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const bytes = {};
const pending = [];
try {
  const context = await browser.newContext();
  const errors = [];
  // Sizes from the headers, taken as each response arrives: a Worker's
  // bodies are gone once the page terminates it.
  context.on("response", (response) => {
    const path = new URL(response.url()).pathname;
    const length = Number(response.headers()["content-length"]);
    if (Number.isFinite(length)) bytes[path] = length;
    else
      pending.push(
        response.body().then(
          (body) => (bytes[path] = body.length),
          () => {},
        ),
      );
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => window.benchResult !== undefined, null, { timeout: 600_000 });
  const result = await page.evaluate(() => window.benchResult);
  await Promise.all(pending);
  console.log(JSON.stringify({ ...result, bytes, errors }));
} finally {
  await browser.close();
}
