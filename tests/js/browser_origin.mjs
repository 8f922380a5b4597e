// A page of a site elsewhere, in Debian's Chromium (driven by playwright-core), tries to open
// a WebSocket to a local agent: cross-site WebSocket hijacking, which server.allowed_origins
// refuses. Driven by tests/integration/test_origins.py.
// Usage: node browser_origin.mjs PAGE_ORIGIN WS_URL
// The page is served at PAGE_ORIGIN (answered by the browser's request routing, so no such
// site needs to exist); it prints {"opened":bool} as a JSON line and exits.
import { chromium } from "playwright-core";

const [pageOrigin, url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Chromium's Local Network Access checks would stop a public page reaching loopback before
  // the agent sees it; turned off, so that what is tested is the agent's own refusal (an
  // agent on a LAN address, or an older browser, has no such shield).
  args: ["--disable-features=LocalNetworkAccessChecks", "--no-sandbox"],
});
try {
  const page = await browser.newPage();
  await page.route(`${pageOrigin}/page`, (route) =>
    route.fulfill({ contentType: "text/html", body: "<!doctype html><title>elsewhere</title>" }),
  );
  await page.goto(`${pageOrigin}/page`);
  const opened = await page.evaluate(
    (u) =>
      new Promise((resolve) => {
        const ws = new WebSocket(u);
        ws.onopen = () => {
          ws.close();
          resolve(true);
        };
        ws.onerror = () => resolve(false);
        setTimeout(() => resolve(false), 8000);
      }),
    url,
  );
  console.log(JSON.stringify({ opened }));
} finally {
  await browser.close();
}
