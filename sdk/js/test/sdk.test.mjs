// Run by tests/e2e/test_sdks.py in a scratch project where the packed tarball is installed, against a
// running gateway (INFRARIX_BASE_URL, INFRARIX_KEY; LIMITED_KEY is under a 1-request-a-second limit).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import {
  AIGateway, NotFoundError, AuthenticationError, AbortError, RateLimitError, BadRequestError,
} from "@infrarix/gateway";

test("the product page's snippet, exactly", async () => {
  const gw = new AIGateway({ apiKey: process.env.INFRARIX_KEY })
  const response = await gw.chat({
    model: 'gpt-4o',
    fallback: ['claude-sonnet-4-20250514'],
    messages: [{ role: 'user', content: 'Hello!' }],
  })
  console.log(response.content)
  console.log(`Cost: $${response.usage.cost_usd}`)
  assert.equal(response.content, "Hello from the mock! You said: Hello!");
  assert.ok(response.usage.cost_usd > 0);
});

test("CommonJS require gets the same client", () => {
  const { AIGateway: Required } = createRequire(import.meta.url)("@infrarix/gateway");
  assert.equal(typeof Required, "function");
  assert.equal(new Required().baseURL, process.env.INFRARIX_BASE_URL);
});

test("a stream yields start, deltas and end with the cost", async () => {
  const gw = new AIGateway();
  const types = [];
  let text = "";
  let end;
  for await (const event of gw.chatStream({ model: "gpt-4o", messages: [{ role: "user", content: "stream me" }] })) {
    types.push(event.type);
    if (event.type === "delta") text += event.content;
    if (event.type === "end") end = event;
  }
  assert.equal(types[0], "start");
  assert.equal(types.at(-1), "end");
  assert.equal(text, "Hello from the mock! You said: stream me");
  assert.ok(end.usage.cost_usd > 0 && end.finish_reason === "stop");
});

test("an aborted stream stops, and the gateway cancels the provider call", async () => {
  const gw = new AIGateway();
  const controller = new AbortController();
  const started = Date.now();
  let deltas = 0;
  let id;
  await assert.rejects(async () => {
    for await (const event of gw.chatStream({ model: "long-stream", messages: [{ role: "user", content: "go on" }] },
                                            { signal: controller.signal })) {
      if (event.type === "start") id = event.id;
      if (event.type === "delta" && ++deltas === 5) controller.abort();
    }
  }, AbortError);
  assert.ok(Date.now() - started < 5000, "stopped long before the 300 tokens");
  writeFileSync(process.env.CANCELLED_ID_FILE, id);
});

test("errors carry the gateway's body, status and request id", async () => {
  const gw = new AIGateway({ maxRetries: 0 });
  const error = await gw.chat({ model: "no-such-model", messages: [{ role: "user", content: "x" }] })
    .catch((e) => e);
  assert.ok(error instanceof NotFoundError);
  assert.equal(error.status, 404);
  assert.equal(error.code, "model_not_found");
  assert.equal(error.param, "model");
  const upstream = await gw.chat({ model: "bad-params", messages: [{ role: "user", content: "x" }] }).catch((e) => e);
  assert.ok(upstream instanceof BadRequestError && upstream.code === "upstream_bad_request");
  assert.match(upstream.requestId ?? "", /^gw-/);  // an accepted request: its id, to quote
  const refused = await new AIGateway({ apiKey: "sk-not-a-key-at-all" }).models().catch((e) => e);
  assert.ok(refused instanceof AuthenticationError && refused.status === 401);
});

test("a 429 is retried after its retry-after", async () => {
  const gw = new AIGateway({ apiKey: process.env.LIMITED_KEY, maxRetries: 3 });
  const ask = () => gw.chat({ model: "gpt-4o", messages: [{ role: "user", content: "limited" }] });
  await ask();
  const started = Date.now();
  const second = await ask();  // refused with retry-after 1, then answered
  assert.equal(second.content, "Hello from the mock! You said: limited");
  assert.ok(Date.now() - started >= 900);
  const impatient = new AIGateway({ apiKey: process.env.LIMITED_KEY, maxRetries: 0 });
  await assert.rejects(() => impatient.chat({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] }),
                       RateLimitError);
});

test("embeddings and models", async () => {
  const gw = new AIGateway();
  const embedded = await gw.embeddings({ model: "text-embedding-3-small", input: ["a", "b"] });
  assert.equal(embedded.data.length, 2);
  const models = await gw.models();
  assert.ok(models.data.some((m) => m.id === "gpt-4o"));
});
