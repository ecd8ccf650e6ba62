-- The same 1000-line stream, native, straight to the fake Ollama.
wrk.method = "POST"
wrk.body = '{"model":"gemma3:1b","messages":[{"role":"user","content":"Hello"}],"options":{"num_predict":1000}}'
wrk.headers["Content-Type"] = "application/json"
