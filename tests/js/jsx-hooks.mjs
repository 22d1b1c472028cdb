// Module hooks (registered by register-jsx.mjs): a .jsx file is transformed to an ES module.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { transform } from "esbuild";

export async function load(url, context, nextLoad) {
  if (!url.endsWith(".jsx")) return nextLoad(url, context);
  const path = fileURLToPath(url);
  const { code } = await transform(await readFile(path, "utf8"), {
    loader: "jsx",
    jsx: "automatic",
    format: "esm",
    sourcefile: path,
  });
  return { format: "module", source: code, shortCircuit: true };
}
