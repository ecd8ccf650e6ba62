-- A streamed OpenAI Responses answer of 1000 chunks through the proxy (Codex's route).
wrk.method = "POST"
wrk.body = '{"model":"gemma3:1b","max_output_tokens":1000,"input":"Hello","stream":true}'
wrk.headers["Content-Type"] = "application/json"
