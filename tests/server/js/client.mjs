// Drives a modelkit server with the official `ollama` npm client and prints one JSON object:
//   node client.mjs http://127.0.0.1:PORT [model]
// tests/server/test_ollama_js.py runs this and checks what it prints.
import { Ollama } from "ollama";

const [host, model = "tiny"] = process.argv.slice(2);
if (!host) {
  console.error("usage: node client.mjs <server url> [model]");
  process.exit(2);
}
// A server with API keys: the key goes in the headers, as ollama-js users pass it.
const key = process.env.MODELKIT_API_KEY;
const client = new Ollama(key ? { host, headers: { Authorization: `Bearer ${key}` } } : { host });
const options = { num_predict: 4, num_thread: 1, temperature: 0, seed: 1 };

const version = await client.version();
const list = await client.list();
const generated = await client.generate({ model, prompt: "hello", stream: false, options });
const scored = await client.generate({
  model,
  prompt: "hello",
  stream: false,
  options,
  logprobs: true,
  top_logprobs: 2,
});

const parts = [];
const stream = await client.chat({
  model,
  messages: [{ role: "user", content: "hi" }],
  stream: true,
  options,
});
for await (const part of stream) {
  parts.push(part);
}
const last = parts[parts.length - 1];

let missing = null;
try {
  await client.generate({ model: "missing", prompt: "x", stream: false });
} catch (err) {
  missing = { name: err.name, status_code: err.status_code, error: err.error };
}

console.log(
  JSON.stringify({
    version: version.version,
    models: list.models.map((m) => m.name),
    generate: {
      response: generated.response,
      done: generated.done,
      done_reason: generated.done_reason,
      eval_count: generated.eval_count,
    },
    logprobs: {
      response: scored.response,
      tokens: (scored.logprobs ?? []).map((l) => l.token),
      tops: (scored.logprobs ?? []).map((l) => (l.top_logprobs ?? []).length),
      finite: (scored.logprobs ?? []).every((l) => Number.isFinite(l.logprob) && l.logprob <= 0),
    },
    chat: {
      parts: parts.length,
      roles: [...new Set(parts.map((p) => p.message.role))],
      content: parts.map((p) => p.message.content).join(""),
      done: last.done,
      done_reason: last.done_reason,
      eval_count: last.eval_count,
    },
    missing,
  }),
);
