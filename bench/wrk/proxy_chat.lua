-- POST a small non-streamed chat completion to the proxy.
wrk.method = "POST"
wrk.body = '{"model":"gemma3:1b","messages":[{"role":"user","content":"Hello"}]}'
wrk.headers["Content-Type"] = "application/json"
