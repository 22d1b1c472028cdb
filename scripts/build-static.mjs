// Build the front-end we serve ourselves (never from a CDN):
// - copy Alpine's CSP build (no eval or Function(): the pages run under a strict CSP) into static/vendor/;
// - bundle the React islands (static/src/islands/*.jsx, with React from npm) into static/build/.
// Both outputs are committed, so Docker and Node-less machines serve them as they are.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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
