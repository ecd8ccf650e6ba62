// A fast fake Ollama for benchmarks: Node's plain `http` module, replies precomputed, so the
// proxy, not this server, is what a benchmark measures.
//
//   node bench/fake_ollama.js [port]        (default 11500; prints "listening <port>")
//
// POST /api/chat and /api/generate answer stream:false with one JSON object; streamed
// requests get `options.num_predict` content lines (default 1000) then a done line.
// POST /api/embed answers one 768-dim vector per input. GET /api/tags lists two models.
"use strict";
const http = require("http");

const port = Number(process.argv[2] || process.env.PORT || 11500);
const created = "2026-01-01T00:00:00.000000000Z";
const tags = JSON.stringify({
  models: ["gemma3:1b", "qwen3:0.6b"].map((name) => ({
    name, model: name, modified_at: created, size: 815319791,
    digest: "d080a98fbf7dcfc62b47a3cd33b8d68534864df070d0638ccd466844fd222bee",
    details: { parent_model: "", format: "gguf", family: "gemma3", families: ["gemma3"],
      parameter_size: "999.89M", quantization_level: "Q4_K_M" },
  })),
});
const stats = { prompt_eval_count: 26, prompt_eval_duration: 342546000, eval_count: 12,
  eval_duration: 453559900, total_duration: 883583458, load_duration: 1334875 };
const chatWhole = (model) => JSON.stringify({ model, created_at: created,
  message: { role: "assistant", content: "Hello! How can I help you today?" },
  done: true, done_reason: "stop", ...stats });
const generateWhole = (model) => JSON.stringify({ model, created_at: created,
  response: "Hello! How can I help you today?", done: true, done_reason: "stop", ...stats });
const vector = JSON.stringify(Array.from({ length: 768 }, (_, i) => Math.sin(i) / 28));

function streamLines(res, model, chat, count) {
  res.writeHead(200, { "Content-Type": "application/x-ndjson" });
  const piece = chat
    ? (JSON.stringify({ model, created_at: created, message: { role: "assistant", content: "tok " }, done: false }) + "\n")
    : (JSON.stringify({ model, created_at: created, response: "tok ", done: false }) + "\n");
  const last = chat
    ? JSON.stringify({ model, created_at: created, message: { role: "assistant", content: "" }, done: true, done_reason: "stop", ...stats, eval_count: count }) + "\n"
    : JSON.stringify({ model, created_at: created, response: "", done: true, done_reason: "stop", ...stats, eval_count: count }) + "\n";
  // Write in batches of 64 lines so the fake is never the bottleneck; a real Ollama sends one
  // line per token, which the proxy handles the same way (it translates what each read holds).
  let sent = 0;
  const batch = piece.repeat(64);
  function more() {
    while (sent < count) {
      const n = Math.min(64, count - sent);
      sent += n;
      if (!res.write(n === 64 ? batch : piece.repeat(n))) { res.once("drain", more); return; }
    }
    res.end(last);
  }
  more();
}

const server = http.createServer((req, res) => {
  if (req.method === "GET") {
    if (req.url === "/api/tags") { res.writeHead(200, { "Content-Type": "application/json" }); res.end(tags); return; }
    if (req.url === "/api/version") { res.writeHead(200, { "Content-Type": "application/json" }); res.end('{"version":"0.32.3"}'); return; }
    if (req.url === "/") { res.writeHead(200, { "Content-Type": "text/plain" }); res.end("Ollama is running"); return; }
    res.writeHead(404); res.end(); return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body = {};
    try { body = JSON.parse(Buffer.concat(chunks).toString() || "{}"); } catch (e) {
      res.writeHead(400, { "Content-Type": "application/json" }); res.end('{"error":"invalid JSON"}'); return;
    }
    const model = body.model || "gemma3:1b";
    const stream = body.stream !== false;
    if (req.url === "/api/chat" || req.url === "/api/generate") {
      const chat = req.url === "/api/chat";
      if (!stream) {
        res.writeHead(200, { "Content-Type": "application/json; charset=utf-8" });
        res.end(chat ? chatWhole(model) : generateWhole(model));
        return;
      }
      const count = (body.options && body.options.num_predict > 0) ? body.options.num_predict : 1000;
      streamLines(res, model, chat, count);
      return;
    }
    if (req.url === "/api/embed") {
      const inputs = Array.isArray(body.input) ? body.input : [body.input];
      res.writeHead(200, { "Content-Type": "application/json; charset=utf-8" });
      res.end(`{"model":${JSON.stringify(model)},"embeddings":[${inputs.map(() => vector).join(",")}],"prompt_eval_count":${inputs.length}}`);
      return;
    }
    res.writeHead(404); res.end();
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
