"""The secrets stackctl keeps in secrets.env (mode 0600): each is an environment variable a
service reads, so the name is fixed by the program that reads it."""

WEBUI_SECRET_KEY = "WEBUI_SECRET_KEY"  # Open WebUI signs its sessions with it
OPENWEBUI_PROXY_KEY = "OPENAI_API_KEYS"  # Open WebUI's key for its OpenAI connection: the proxy
WEBUI_ADMIN_PASSWORD = "WEBUI_ADMIN_PASSWORD"  # Open WebUI's headless first admin
# its email: openwebui.admin_email, else (exposed) one generated once; not secret, but kept
# here so it stays what the admin was created with
WEBUI_ADMIN_EMAIL = "WEBUI_ADMIN_EMAIL"
HF_TOKEN = "HF_TOKEN"  # Hugging Face downloads of gated models (vLLM)
VLLM_API_KEY = "VLLM_API_KEY"  # set it and vLLM wants it as a Bearer token on /v1
RAY_AUTH_TOKEN = "RAY_AUTH_TOKEN"  # Ray's cluster token (Ray 2.52 and later: token auth)
