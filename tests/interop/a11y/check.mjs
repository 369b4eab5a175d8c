// Loads each URL in Debian's headless Chromium, checks it answers 200 with HTML, that every
// link on it resolves (same-origin links: status < 400), and runs axe-core's WCAG 2.1 A/AA
// rules on it; exits 1 listing every violation. Optional `--screenshot DIR` saves a PNG
// per page. Usage: node check.mjs [--screenshot DIR] URL...
import { chromium } from "playwright-core";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";

const require = createRequire(import.meta.url);
const axePath = require.resolve("axe-core/axe.min.js");
const args = process.argv.slice(2);
let shots = null;
if (args[0] === "--screenshot") {
  shots = args[1];
  args.splice(0, 2);
  mkdirSync(shots, { recursive: true });
}
if (args.length === 0) {
  console.error("usage: node check.mjs [--screenshot DIR] URL...");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
let failures = 0;
try {
  const context = await browser.newContext();
  for (const [i, url] of args.entries()) {
    const page = await context.newPage();
    const response = await page.goto(url, { waitUntil: "load" });
    const type = response?.headers()["content-type"] ?? "";
    if (!response || response.status() !== 200 || !type.startsWith("text/html")) {
      console.log(`FAIL ${url}: status ${response?.status()} ${type}`);
      failures++;
      continue;
    }
    const origin = new URL(url).origin;
    const links = await page.$$eval("a[href]", (as) => as.map((a) => a.href));
    for (const link of new Set(links)) {
      if (new URL(link).origin !== origin) continue;
      const answer = await context.request.get(link);
      if (answer.status() >= 400) {
        console.log(`FAIL ${url}: link ${link} answers ${answer.status()}`);
        failures++;
      }
    }
    await page.addScriptTag({ path: axePath });
    const result = await page.evaluate(() =>
      // eslint-disable-next-line no-undef
      axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] }),
    );
    for (const violation of result.violations) {
      const where = violation.nodes.map((n) => n.target.join(" ")).join(", ");
      console.log(`FAIL ${url}: ${violation.id} (${violation.impact}): ${violation.help} at ${where}`);
      failures++;
    }
    if (shots) await page.screenshot({ path: `${shots}/page-${i}.png`, fullPage: true });
    console.log(
      `${result.violations.length === 0 ? "ok  " : "FAIL"} ${url}: ${result.passes.length} axe rules pass, ` +
        `${result.violations.length} violated, ${new Set(links).size} links`,
    );
    await page.close();
  }
} finally {
  await browser.close();
}
process.exit(failures ? 1 : 0);
