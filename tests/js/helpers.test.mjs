// The islands' other pure helpers: api.js (the fetch client and the formatting functions) and
// those the .jsx components export (loaded through tests/js/register-jsx.mjs).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { decisionChanges } from "../../static/src/islands/AgentStateViewer.jsx";
import { api, ApiFailure, personName, roleLabel, seconds, sessionState, usageText } from "../../static/src/islands/api.js";
import { fieldSentence } from "../../static/src/islands/DecisionTree.jsx";
import { ddl, threatDecision } from "../../static/src/islands/Deliverables.jsx";
import { cost, usageTotals } from "../../static/src/islands/ModelUsage.jsx";
import { displayStatus } from "../../static/src/islands/TeamExecutionMonitor.jsx";
import { diff, keyedDiff, short } from "../../static/src/islands/tree.jsx";

describe("api", () => {
  let server;
  let base;
  const seen = [];

  before(async () => {
    server = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk) => (body += chunk));
      request.on("end", () => {
        seen.push({ method: request.method, url: request.url, type: request.headers["content-type"], body });
        if (request.url === "/ok") {
          response.writeHead(201, { "Content-Type": "application/json" });
          response.end(JSON.stringify({ team: { id: 1 } }));
        } else if (request.url === "/invalid") {
          response.writeHead(400, { "Content-Type": "application/json" });
          response.end(JSON.stringify({ error: { code: "validation_error", message: "name is required", fields: { name: "required" } } }));
        } else if (request.url === "/empty") {
          response.writeHead(204);
          response.end();
        } else {
          response.writeHead(502, { "Content-Type": "text/html" });
          response.end("<h1>Bad gateway</h1>");
        }
      });
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${server.address().port}`;
  });

  after(() => new Promise((resolve) => server.close(resolve)));

  test("sends JSON and returns the parsed answer", async () => {
    assert.deepEqual(await api("POST", `${base}/ok`, { name: "Core" }), { team: { id: 1 } });
    assert.deepEqual(seen.at(-1), { method: "POST", url: "/ok", type: "application/json", body: '{"name":"Core"}' });
    assert.equal(await api("DELETE", `${base}/empty`), null);
    assert.equal(seen.at(-1).type, undefined, "no body, no Content-Type");
  });

  test("throws the error envelope as an ApiFailure with status and fields", async () => {
    const failure = await api("POST", `${base}/invalid`, {}).catch((error) => error);
    assert.ok(failure instanceof ApiFailure);
    assert.equal(failure.status, 400);
    assert.equal(failure.message, "name is required");
    assert.deepEqual(failure.fields, { name: "required" });
  });

  test("names the status when the failure is not JSON", async () => {
    const failure = await api("GET", `${base}/down`).catch((error) => error);
    assert.equal(failure.status, 502);
    assert.equal(failure.message, "HTTP 502");
    assert.deepEqual(failure.fields, {});
  });
});

describe("api.js formatting", () => {
  test("seconds: milliseconds below 1 s, tenths below a minute, then minutes", () => {
    assert.deepEqual([null, NaN, 0, 0.0004, 0.25, 1, 59.94, 61, 125.6].map(seconds), [
      "–",
      "–",
      "1 ms",
      "1 ms",
      "250 ms",
      "1.0 s",
      "59.9 s",
      "1 min 1 s",
      "2 min 6 s",
    ]);
  });

  test("sessionState: ended by a user is ended early, never completed", () => {
    assert.equal(sessionState(null), "loading");
    assert.equal(sessionState({ status: "active" }), "running");
    assert.equal(sessionState({ status: "completed", end_reason: "user" }), "ended early");
    assert.equal(sessionState({ status: "completed", end_reason: "completed" }), "completed");
    assert.equal(sessionState({ status: "error", end_reason: "error" }), "error");
  });

  test("personName: you, a team mate, or a former member", () => {
    const config = { userId: 1, people: { 2: "ada" } };
    assert.deepEqual([1, 2, 3, null].map((id) => personName(config, id)), ["you", "ada", "a former member", "a former member"]);
  });

  test("roleLabel and usageText", () => {
    assert.equal(roleLabel("ui_ux"), "UI/UX designer");
    assert.equal(roleLabel("new_role"), "new_role");
    assert.equal(usageText(null), "");
    assert.equal(usageText({ calls: 0, prompt_tokens: 0, completion_tokens: 0 }), "");
    assert.equal(
      usageText({ model: "m-1", calls: 2, prompt_tokens: 1000, completion_tokens: 234, cost_usd: 0.0123 }),
      `m-1 · ${(1234).toLocaleString()} tokens · $0.0123`,
    );
    assert.equal(usageText({ calls: 1, prompt_tokens: 5, completion_tokens: 0, cost_usd: null }), "5 tokens");
  });
});

describe("the islands' helpers", () => {
  test("displayStatus: a pending task with a retry count is retrying", () => {
    assert.equal(displayStatus({ status: "pending", retry_count: 1 }), "retrying");
    assert.equal(displayStatus({ status: "pending", retry_count: 0 }), "pending");
    assert.equal(displayStatus({ status: "error", retry_count: 3 }), "error");
  });

  test("fieldSentence: the API's reason as a sentence beside the field", () => {
    assert.equal(fieldSentence("decision_text", "required"), "Decision is required.");
    assert.equal(fieldSentence("category", "must be one of: data, design"), "Category must be one of: data, design.");
    assert.equal(fieldSentence("confidence", "not a level"), "Confidence is not a level.");
    assert.equal(fieldSentence("other", ""), "other is not valid.");
  });

  test("usageTotals and cost: an unknown cost makes the total unknown", () => {
    assert.equal(usageTotals([{ usage: null }]), null);
    const a = { calls: 1, prompt_tokens: 10, completion_tokens: 5, cost_usd: 0.5 };
    assert.deepEqual(usageTotals([{ usage: a }, { usage: a }]), { calls: 2, prompt_tokens: 20, completion_tokens: 10, cost_usd: 1 });
    assert.equal(usageTotals([{ usage: a }, { usage: { ...a, cost_usd: null } }, { usage: a }]).cost_usd, null);
    assert.deepEqual([null, 0.001, 1.5].map(cost), ["unknown", "$0.0010", "$1.50"]);
  });

  test("decisionChanges: added, removed and reworded decisions, matched by key", () => {
    const before = [{ key: "a", text: "one" }, { key: "b", text: "two" }];
    const after = [{ key: "b", text: "two!" }, { key: "c", text: "three" }];
    assert.deepEqual(
      decisionChanges(before, after).map((c) => `${c.kind}:${c.key}`),
      ["changed:b", "added:c", "removed:a"],
    );
    assert.deepEqual(decisionChanges(null, null), []);
  });

  test("diff and keyedDiff: by path, and list items by identity rather than position", () => {
    assert.deepEqual(diff({ a: 1, b: [1] }, { a: 2, c: {} }), [
      { path: "a", kind: "changed", before: 1, after: 2 },
      { path: "c", kind: "added", after: {} },
      { path: "b.0", kind: "removed", before: 1 },
    ]);
    const before = { tables: [{ name: "users", cols: 2 }, { name: "teams", cols: 3 }] };
    const after = { tables: [{ name: "teams", cols: 3 }, { name: "users", cols: 2 }] };
    assert.equal(diff(before, after).length, 4, "by position, a reorder looks like changes");
    assert.deepEqual(keyedDiff(before, after), [], "by identity, it is not");
    assert.equal(short("x".repeat(100)).length, 78);
    assert.equal(short({ a: 1 }), '{"a":1}');
  });

  test("ddl: the DBA's tables and indexes as PostgreSQL", () => {
    const text = ddl({
      tables: [
        {
          name: "notes",
          columns: [
            { name: "id", type: "BIGSERIAL", key: "primary" },
            { name: "user_id", type: "BIGINT", key: "foreign -> users.id", null: false },
            { name: "body" },
          ],
        },
      ],
      indexes: [
        { table: "notes", columns: ["user_id"], unique: true, why: "one per user" },
        { table: "notes", columns: ["body"], kind: "fulltext" },
      ],
    });
    assert.equal(
      text,
      [
        "CREATE TABLE notes (\n    id BIGSERIAL PRIMARY KEY,\n    user_id BIGINT REFERENCES users (id) NOT NULL,\n    body TEXT\n);",
        "CREATE UNIQUE INDEX idx_notes_user_id ON notes (user_id);  -- one per user",
        "CREATE INDEX idx_notes_body ON notes USING GIN (to_tsvector('simple', body));",
      ].join("\n\n"),
    );
  });

  test("threatDecision: by named decision, by title, or by the threat's kind", () => {
    const decisions = [
      { key: "security.authz", text: "Check ownership on every id" },
      { key: "security.data", text: "Encrypt at rest" },
      { key: "security.csrf", text: "Refuse cross-site writes" },
    ];
    assert.equal(threatDecision({ decision: "security.csrf" }, decisions).key, "security.csrf");
    assert.equal(threatDecision({ threat: "Encrypt" }, decisions).key, "security.data");
    assert.equal(threatDecision({ threat: "Insecure direct object reference" }, decisions).key, "security.authz");
    assert.equal(threatDecision({ threat: "Leak", target: "table notes" }, decisions).key, "security.data");
    assert.equal(threatDecision({ threat: "Leak" }, decisions), null);
  });
});
