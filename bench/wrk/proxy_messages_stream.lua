-- A streamed Anthropic Messages answer of 1000 chunks through the proxy (Claude Code's route).
wrk.method = "POST"
wrk.body = '{"model":"gemma3:1b","max_tokens":1000,"messages":[{"role":"user","content":"Hello"}],"stream":true}'
wrk.headers["Content-Type"] = "application/json"
