// Copy the front-end libraries we serve ourselves (never from a CDN) into static/vendor/.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vendored = [["node_modules/alpinejs/dist/cdn.min.js", "static/vendor/alpine.min.js"]];

mkdirSync(join(root, "static/vendor"), { recursive: true });
for (const [from, to] of vendored) {
  copyFileSync(join(root, from), join(root, to));
  console.log(`vendored ${from} -> ${to}`);
}
