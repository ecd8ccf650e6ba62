-- The same chat, native, straight to the fake Ollama.
wrk.method = "POST"
wrk.body = '{"model":"gemma3:1b","messages":[{"role":"user","content":"Hello"}],"stream":false}'
wrk.headers["Content-Type"] = "application/json"
