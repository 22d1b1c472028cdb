// `npm test` loads this first (`node --import`), so the tests can import the islands' .jsx
// modules for their exported pure functions: .jsx files go through esbuild's JSX transform with
// React's automatic runtime, as scripts/build-static.mjs bundles them.
import { register } from "node:module";

register("./jsx-hooks.mjs", import.meta.url);
