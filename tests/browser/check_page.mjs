// Opens a page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) and prints what a reader sees, as JSON on stdout:
//   node check_page.mjs FILE.html
// → {"title", "errors": [console errors and page errors], "plots": [{
//     "column", "width", "height", "bars": visible bars, "points": of a trend
//     line}], "summary": text}
// The Rust test decides what is right; this only looks.
import { chromium } from "playwright-core";

const file = process.argv[2];
if (!file) {
  console.error("usage: node check_page.mjs FILE.html");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // No network here: keep Chromium from trying (and its logs quiet).
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  const errors = [];
  const requests = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("request", (r) => r.url().startsWith("file:") || requests.push(r.url()));
  await page.goto("file://" + file, { waitUntil: "load" });
  const seen = await page.evaluate(() => ({
    title: document.title,
    summary: document.querySelector("#summary")?.innerText ?? null,
    plots: [...document.querySelectorAll("section.column")].map((s) => {
      const svg = s.querySelector("svg.plot");
      const box = svg?.getBoundingClientRect();
      const bars = svg
        ? [...svg.querySelectorAll("rect")].filter((r) => r.getBoundingClientRect().height > 0.5).length
        : 0;
      // Trend charts: the points of the score line.
      const points = svg?.querySelector("polyline")?.points?.numberOfItems ?? 0;
      return { column: s.dataset.column, width: box?.width ?? 0, height: box?.height ?? 0, bars, points };
    }),
    scripts: document.querySelectorAll("script").length,
  }));
  console.log(JSON.stringify({ ...seen, errors, requests }));
} finally {
  await browser.close();
}
