"""Ollama's model options and their JSON types: pure data, for the config's checks
(proxy.model_options) and the proxy's (a request's `options`).

From Ollama's api/types.go (`Options` and the embedded `Runner`, github.com/ollama/ollama).
Ollama ignores unknown keys silently, so a typo would never be noticed: both places refuse one.
"""

from __future__ import annotations

# in api/types.go's order (Options, then Runner), which error messages list them in
OPTION_TYPES: dict[str, str] = {
    "num_keep": "integer",
    "seed": "integer",
    "num_predict": "integer",
    "top_k": "integer",
    "top_p": "number",
    "min_p": "number",
    "typical_p": "number",
    "repeat_last_n": "integer",
    "temperature": "number",
    "repeat_penalty": "number",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "stop": "array",
    "num_ctx": "integer",
    "num_batch": "integer",
    "num_gpu": "integer",
    "main_gpu": "integer",
    "use_mmap": "boolean",
    "num_thread": "integer",
}
