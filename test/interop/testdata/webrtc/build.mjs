// Bundles the test pages with esbuild: node build.mjs OUTDIR writes
// OUTDIR/index.html, OUTDIR/jssip.js (JsSIP is CommonJS) and
// OUTDIR/sipjs.js (SIP.js), which the Go test serves over HTTP.
import * as esbuild from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error("usage: node build.mjs OUTDIR");
  process.exit(2);
}
await mkdir(out, { recursive: true });
await esbuild.build({
  entryPoints: { jssip: join(here, "page/jssip.js"), sipjs: join(here, "page/sipjs.js") },
  outdir: out,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "chrome120",
  logLevel: "warning",
});
await copyFile(join(here, "page/index.html"), join(out, "index.html"));
