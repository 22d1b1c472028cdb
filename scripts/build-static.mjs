// Build the front-end we serve ourselves (never from a CDN):
// - copy Alpine's CSP build (no eval or Function(): the pages run under a strict CSP) into static/vendor/;
// - write the vocabulary the islands share with the server (static/src/islands/vocabulary.js, event
//   names and WebSocket close codes) from its one source, models/vocabulary.py;
// - bundle the React islands (static/src/islands/*.jsx, with React from npm) into static/build/.
// All outputs are committed, so Docker and Node-less machines serve them as they are.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vendored = [
  ["node_modules/@alpinejs/csp/dist/cdn.min.js", "static/vendor/alpine.min.js"],
  // The /docs page renders /openapi.json with Swagger UI, served from here rather than a CDN.
  ["node_modules/swagger-ui-dist/swagger-ui-bundle.js", "static/vendor/swagger-ui/swagger-ui-bundle.js"],
  ["node_modules/swagger-ui-dist/swagger-ui.css", "static/vendor/swagger-ui/swagger-ui.css"],
  // Not served: the browser tests inject it to check every page with axe-core.
  ["node_modules/axe-core/axe.min.js", "tests/vendor/axe.min.js"],
];

mkdirSync(join(root, "static/vendor/swagger-ui"), { recursive: true });
mkdirSync(join(root, "tests/vendor"), { recursive: true });
for (const [from, to] of vendored) {
  copyFileSync(join(root, from), join(root, to));
  console.log(`vendored ${from} -> ${to}`);
}

// models/vocabulary.py imports nothing, so any Python 3 runs it; the project's own is preferred.
const python = process.env.PYTHON || (existsSync(join(root, ".venv/bin/python")) ? join(root, ".venv/bin/python") : "python3");
const exported = spawnSync(python, ["models/vocabulary.py"], { cwd: root, encoding: "utf8" });
if (exported.status !== 0) {
  throw new Error(`${python} models/vocabulary.py failed: ${exported.error || exported.stderr}`);
}
const vocabulary = join(root, "static/src/islands/vocabulary.js");
if (!existsSync(vocabulary) || readFileSync(vocabulary, "utf8") !== exported.stdout) {
  writeFileSync(vocabulary, exported.stdout);
  console.log("wrote static/src/islands/vocabulary.js from models/vocabulary.py");
}

const entries = { session: "static/src/islands/session.jsx" };
await build({
  absWorkingDir: root,
  entryPoints: entries,
  outdir: "static/build",
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "linked",
  logLevel: "info",
});

// A fingerprint of what the bundle was built from; tests/test_dashboard_pages.py recomputes it,
// so a committed bundle that is older than its sources fails the suite.
const sources = readdirSync(join(root, "static/src/islands")).sort();
const hash = createHash("sha256");
for (const name of sources) {
  hash.update(`${name}\n`);
  hash.update(readFileSync(join(root, "static/src/islands", name)));
}
const manifest = { entries: Object.keys(entries), sources, sources_sha256: hash.digest("hex") };
writeFileSync(join(root, "static/build/manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
