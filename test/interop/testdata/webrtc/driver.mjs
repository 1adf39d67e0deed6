// Drives the test page in Debian's Chromium for the Go test
// (../../webrtc_browser_test.go), through puppeteer-core.
//
//   node driver.mjs --chromium /usr/bin/chromium --user-data-dir DIR \
//     --spki HASH --fake-audio TONE.wav \
//     --url http://127.0.0.1:PORT/index.html?lib=jssip&...
//
// stdout, one line each:
//   EVENT {json}     an event: from the page (registered, confirmed,
//                    stats, ended, ...) or the driver (browser, loaded,
//                    screenshot, done, error)
//   CONSOLE type text   the page's console, relayed
//   DRIVER text      the driver's own notes
// stdin, one JSON command a line:
//   {"cmd":"call","target":"sip:bob@example.test"}
//   {"cmd":"hangup"}
//   {"cmd":"screenshot","path":"/abs/file.png"}
//   {"cmd":"quit"}   (or end of input): close the browser and exit
import puppeteer from "puppeteer-core";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "user-data-dir": { type: "string" },
    spki: { type: "string" },
    "fake-audio": { type: "string" },
    url: { type: "string" },
    timeout: { type: "string", default: "60000" },
  },
});
for (const k of ["user-data-dir", "spki", "fake-audio", "url"]) {
  if (!opt[k]) {
    console.error("driver: --" + k + " is required");
    process.exit(2);
  }
}
const timeout = Number(opt.timeout);

const emit = (ev) => process.stdout.write("EVENT " + JSON.stringify(ev) + "\n");
const note = (text) => process.stdout.write("DRIVER " + text + "\n");

const browser = await puppeteer.launch({
  executablePath: opt.chromium,
  headless: true,
  pipe: true,
  userDataDir: opt["user-data-dir"],
  timeout,
  protocolTimeout: timeout,
  // The driver decides when the browser goes: on quit, end of input, or
  // SIGTERM from the test (below).
  handleSIGINT: false,
  handleSIGTERM: false,
  handleSIGHUP: false,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    // The fake microphone plays this file (a sine, looped), which the
    // phone on the other side must hear.
    "--use-file-for-fake-audio-capture=" + opt["fake-audio"],
    "--autoplay-policy=no-user-gesture-required",
    // The wss listener's certificate is the test's own, self-signed:
    // trusted by the hash of its key, nothing else.
    "--ignore-certificate-errors-spki-list=" + opt.spki,
  ],
});
const proc = browser.process();
emit({ event: "browser", pid: proc ? proc.pid : 0, version: await browser.version() });

let closing = false;
const finish = async (code) => {
  if (closing) return;
  closing = true;
  try {
    await browser.close();
  } catch (e) {
    note("closing the browser: " + e);
    if (proc) proc.kill("SIGKILL");
  }
  emit({ event: "done", code });
  process.exit(code);
};
process.on("SIGTERM", () => finish(1));
browser.on("disconnected", () => {
  if (!closing) {
    emit({ event: "error", error: "the browser went away" });
    process.exit(1);
  }
});

const page = (await browser.pages())[0] || (await browser.newPage());
page.setDefaultTimeout(timeout);
page.on("console", (m) => {
  for (const line of m.text().split("\n")) {
    process.stdout.write("CONSOLE " + m.type() + " " + line + "\n");
  }
});
page.on("pageerror", (e) => emit({ event: "error", error: "page: " + e.message }));
page.on("requestfailed", (r) => note("request failed: " + r.url() + ": " + (r.failure() ? r.failure().errorText : "")));
await page.exposeFunction("hlasReport", (ev) => emit(ev));

try {
  const resp = await page.goto(opt.url, { waitUntil: "load" });
  emit({ event: "loaded", status: resp ? resp.status() : 0, secure: await page.evaluate(() => window.isSecureContext) });
} catch (e) {
  emit({ event: "error", error: "loading " + opt.url + ": " + e.message });
  await finish(1);
}

const commands = createInterface({ input: process.stdin });
for await (const line of commands) {
  if (!line.trim()) continue;
  let c;
  try {
    c = JSON.parse(line);
  } catch (e) {
    emit({ event: "error", error: "bad command " + line });
    continue;
  }
  try {
    switch (c.cmd) {
      case "call":
        await page.evaluate((t) => window.hlas.call(t), c.target);
        break;
      case "hangup":
        await page.evaluate(() => window.hlas.hangup());
        break;
      case "screenshot":
        await page.screenshot({ path: c.path, fullPage: true });
        emit({ event: "screenshot", path: c.path });
        break;
      case "quit":
        await finish(0);
        break;
      default:
        emit({ event: "error", error: "unknown command " + c.cmd });
    }
  } catch (e) {
    emit({ event: "error", error: c.cmd + ": " + e.message });
  }
}
await finish(0);
