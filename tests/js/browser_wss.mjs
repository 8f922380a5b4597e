// A page in Debian's Chromium (driven by playwright-core) talks to the agent over wss://,
// driven by tests/integration/test_tls.py.
// Usage: node browser_wss.mjs WSS_URL SPKI_SHA256_BASE64
// The page is served at the agent's own origin (https://host:port/page, answered by the
// browser's request routing), so that its WebSocket carries the Origin a real page there
// would. Chromium trusts the test certificate by its key (--ignore-certificate-errors-spki-list:
// the key pinned, not every certificate accepted). The page subscribes to browser/#,
// publishes {"from":"chromium"} to browser/echo, prints the message it gets back as a JSON
// line and exits.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, spki] = process.argv.slice(2);
const origin = url.replace(/^wss:/, "https:").replace(/\/ws$/, "");
// Chromium honours the pinned key only with a profile directory of its own.
const profile = mkdtempSync(join(tmpdir(), "wsagent-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // The page's response comes from the browser's routing, with no address of its own, so
  // Chromium's Local Network Access checks would take it for a public page reaching into
  // loopback; a page really served from the agent's host is not blocked.
  args: [
    `--ignore-certificate-errors-spki-list=${spki}`,
    "--disable-features=LocalNetworkAccessChecks",
    "--no-sandbox",
  ],
});
try {
  const page = await browser.newPage();
  await page.route(`${origin}/page`, (route) =>
    route.fulfill({ contentType: "text/html", body: "<!doctype html><title>wsagent over wss</title>" }),
  );
  await page.goto(`${origin}/page`);
  const message = await page.evaluate(
    (u) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(u);
        const seen = [];
        ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", tags: ["browser/#"] }));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          seen.push(m);
          if (m.type === "subscribed")
            ws.send(JSON.stringify({ type: "publish", tag: "browser/echo", payload: { from: "chromium" } }));
          if (m.type === "message") {
            ws.close();
            resolve(m);
          }
        };
        ws.onerror = () => reject(new Error("WebSocket error; seen " + JSON.stringify(seen)));
        setTimeout(() => reject(new Error("timed out; seen " + JSON.stringify(seen))), 8000);
      }),
    url,
  );
  console.log(JSON.stringify(message));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
