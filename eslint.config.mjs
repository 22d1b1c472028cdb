// ESLint for the front-end we write: the React islands (static/src/islands, bundled by esbuild),
// the Alpine pages' scripts (static/js, loaded as classic scripts), the build script and the
// Node tests. `npm run lint` (and so `make lint`) runs it; warnings fail it too.
import js from "@eslint/js";
import react from "eslint-plugin-react";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";

export default [
  {
    // Generated or vendored: static/build (the bundle), static/vendor (Alpine, Swagger UI), axe.
    ignores: ["static/build/**", "static/vendor/**", "tests/vendor/**", "node_modules/**", ".venv/**"],
  },
  js.configs.recommended,
  {
    rules: {
      // `catch (_)` says "any failure means the same here"; `{ snapshot, ...task }` drops a key.
      "no-unused-vars": ["error", { caughtErrors: "none", ignoreRestSiblings: true }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-var": "error",
      "prefer-const": "error",
    },
  },
  {
    files: ["static/src/islands/**/*.{js,jsx}"],
    ...react.configs.flat.recommended,
    ...react.configs.flat["jsx-runtime"],
    languageOptions: {
      ...react.configs.flat.recommended.languageOptions,
      ecmaVersion: 2022,
      sourceType: "module",
      globals: globals.browser,
    },
    rules: {
      ...react.configs.flat.recommended.rules,
      ...react.configs.flat["jsx-runtime"].rules,
      // The islands are plain JavaScript without PropTypes; the props are read where they are used.
      "react/prop-types": "off",
    },
    settings: { react: { version: "detect" } },
  },
  {
    files: ["static/src/islands/**/*.{js,jsx}"],
    ...reactHooks.configs.flat["recommended-latest"],
  },
  {
    // Classic scripts run by the Alpine pages (CSP: no inline code, so they are files).
    files: ["static/js/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",
      globals: { ...globals.browser, SwaggerUIBundle: "readonly" },
    },
  },
  {
    files: ["scripts/**/*.mjs", "tests/js/**/*.{js,mjs}", "eslint.config.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
  },
];
