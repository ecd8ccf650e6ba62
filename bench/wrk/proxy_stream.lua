-- A streamed chat completion of 1000 chunks through the proxy.
wrk.method = "POST"
wrk.body = '{"model":"gemma3:1b","messages":[{"role":"user","content":"Hello"}],"stream":true,"max_tokens":1000}'
wrk.headers["Content-Type"] = "application/json"
