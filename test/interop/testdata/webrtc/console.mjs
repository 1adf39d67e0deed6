// Drives hlas's web console (api/console/) in Debian's Chromium for the
// Go test (../../console_browser_test.go), through puppeteer-core: it
// loads the page, logs in with the token, then waits for what the test
// asks the page to show.
//
//   node console.mjs --chromium /usr/bin/chromium --user-data-dir DIR \
//     --url http://127.0.0.1:PORT/console/ --token TOKEN
//
// stdout, one line each:
//   EVENT {json}     browser, loaded, loggedin, shown, text, clicked,
//                    screenshot, done, error
//   CONSOLE type text   the page's console, relayed
//   DRIVER text      the driver's own notes
// stdin, one JSON command a line:
//   {"cmd":"wait","id":"reg","selector":"#registrations","text":"bob@",
//    "present":true}   emits {"event":"shown","id":"reg","text":...} once
//                      the element's text has (present) or lacks the text
//   {"cmd":"text","selector":"#cdrs"}   emits {"event":"text","text":...}
//   {"cmd":"click","id":"h","selector":"button[data-testid=hangup]",
//    "attr":"data-call-id","value":"abc@host"}   clicks (with the mouse,
//                      as a person would) the first element of selector
//                      whose attribute attr is value (no attr: the
//                      first); emits {"event":"clicked","id":"h",
//                      "label":its aria-label or text}
//   {"cmd":"login","token":"..."}   logs out and in again with another
//                      token; emits loggedin
//   {"cmd":"screenshot","path":"/abs/file.png"}
//   {"cmd":"quit"}   (or end of input): close the browser and exit
import puppeteer from "puppeteer-core";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const { values: opt } = parseArgs({
  options: {
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "user-data-dir": { type: "string" },
    url: { type: "string" },
    token: { type: "string" },
    timeout: { type: "string", default: "60000" },
  },
});
for (const k of ["user-data-dir", "url", "token"]) {
  if (!opt[k]) {
    console.error("console.mjs: --" + k + " is required");
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
  handleSIGINT: false,
  handleSIGTERM: false,
  handleSIGHUP: false,
  defaultViewport: { width: 1200, height: 900 },
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
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

// login logs in as a person would: type the token, press the button.
const login = async (token) => {
  await page.type("#token", token);
  await page.click("#login-button");
  await page.waitForSelector("body[data-logged-in]");
};

try {
  const resp = await page.goto(opt.url, { waitUntil: "load" });
  emit({ event: "loaded", status: resp ? resp.status() : 0 });
  await login(opt.token);
  emit({ event: "loggedin", stored: await page.evaluate(() => sessionStorage.length > 0) });
} catch (e) {
  emit({ event: "error", error: "loading and logging in to " + opt.url + ": " + e.message });
  await finish(1);
}

const textOf = (sel) => page.$eval(sel, (el) => el.textContent);


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
      case "wait":
        // Not awaited: the test may send other commands meanwhile.
        page
          .waitForFunction(
            (sel, text, present) => {
              const el = document.querySelector(sel);
              return el && el.textContent.includes(text) === present;
            },
            { timeout, polling: 100 },
            c.selector,
            c.text,
            String(c.present) !== "false",
          )
          .then(async () => emit({ event: "shown", id: c.id, text: await textOf(c.selector) }))
          .catch((e) => emit({ event: "error", error: "wait " + c.id + ": " + e.message }));
        break;
      case "text":
        emit({ event: "text", selector: c.selector, text: await textOf(c.selector) });
        break;
      case "click": {
        let target = null;
        let label = "";
        for (const h of await page.$$(c.selector)) {
          const info = await h.evaluate(
            (el, attr) => ({ value: attr ? el.getAttribute(attr) : null, label: el.getAttribute("aria-label") || el.textContent }),
            c.attr || "",
          );
          if (!c.attr || info.value === c.value) {
            target = h;
            label = info.label;
            break;
          }
        }
        if (!target) throw new Error("no element " + c.selector + (c.attr ? " with " + c.attr + "=" + c.value : ""));
        await target.click();
        emit({ event: "clicked", id: c.id, label });
        break;
      }
      case "login":
        // The token is not echoed: it goes in the page only.
        await page.click("#logout");
        await page.waitForSelector("#login:not([hidden])");
        await login(c.token);
        emit({ event: "loggedin", stored: await page.evaluate(() => sessionStorage.length > 0) });
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
