"""Rendering the stack's units: what each service runs, with which environment, after what.

`render_units(config, inputs)` is the entry point: it builds one `ServiceSpec` per service
(platform-neutral: argv, environment, secrets, working directory, dependencies) and hands it
to the systemd or launchd writer, which fills the templates in `templates/systemd/` and
`templates/launchd/`.

Environment precedence: stackctl's defaults, then the config's `<service>.env`, then the
values stackctl enforces (loopback binding, Open WebUI's wiring to the proxy), which the
config cannot override.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

from stackctl import keystore
from stackctl.catalog import FIT_CONTEXT_TOKENS
from stackctl.cluster import (
    NODE_SERVICES_LABEL,
    join_address,
    node_address,
    ray_ports,
    ray_temp_dir,
    ray_venv,
)
from stackctl.config.model import ClusterSection, Config, default_connections
from stackctl.errors import StackctlError
from stackctl.registry import BACKEND, NAMES, info
from stackctl.services.base import Unit
from stackctl.services.inputs import RenderInputs
from stackctl.services.spec import ServiceSpec
from stackctl.services.units_launchd import render_launchd
from stackctl.services.units_systemd import render_systemd
from stackctl.stack import stack_services

LOOPBACK = "127.0.0.1"
# vLLM flags stackctl sets itself: the backend stays on loopback (the proxy is the only door)
# and a key on a command line would be readable by every user (ps, /proc).
RESERVED_VLLM_FLAGS = ("--host", "--port", "--served-model-name", "--api-key")
# Defaults for `ollama serve`, each overridable in ollama.env: Homebrew's tuning (its ollama
# formula's service block sets OLLAMA_FLASH_ATTENTION=1 and OLLAMA_KV_CACHE_TYPE=q8_0 for
# `brew services`: faster, and a KV cache half the size of f16), and the context length the
# model fit assumed (catalog.FIT_CONTEXT_TOKENS), which Ollama would otherwise raise to 32k or
# 256k on a Mac with 24 GiB of GPU memory or more.
OLLAMA_TUNING = {
    "OLLAMA_FLASH_ATTENTION": "1",
    "OLLAMA_KV_CACHE_TYPE": "q8_0",
    "OLLAMA_CONTEXT_LENGTH": str(FIT_CONTEXT_TOKENS),
}


def render_units(
    config: Config, inputs: RenderInputs, *, every_service: bool = False
) -> list[Unit]:
    """The units for this config's stack (`every_service`: all four, for review and the
    golden examples), plus `stackctl.target` on systemd, in start order."""
    if every_service:  # every service whose section the config has (cluster: only in one)
        services = [name for name in NAMES if getattr(config, info(name).section) is not None]
    else:
        services = [s.name for s in stack_services(config, inputs.backend)]
    specs = [service_spec(config, inputs, name) for name in services]
    if inputs.platform == "linux":
        return render_systemd(specs, inputs)

    return render_launchd(specs, inputs)


def service_spec(config: Config, inputs: RenderInputs, service: str) -> ServiceSpec:
    """The spec of one service, built by the function its registry entry names."""
    module, function = info(service).spec.split(":")
    return getattr(importlib.import_module(module), function)(config, inputs)


def starts_after(config: Config, inputs: RenderInputs, service: str) -> tuple[str, ...]:
    """The services of this stack a service starts after: its registry entry's `depends_on`,
    the backend placeholder made concrete, services not in this stack left out."""
    present = {s.name for s in stack_services(config, inputs.backend)}
    after = [inputs.backend if name == BACKEND else name for name in info(service).depends_on]
    return tuple(name for name in after if name in present)


def _base_env(inputs: RenderInputs, first_on_path: Path | None = None) -> dict[str, str]:
    path = inputs.base_path
    if first_on_path is not None and str(first_on_path) not in path.split(":"):
        path = f"{first_on_path}:{path}"
    env = {"PATH": path}
    if inputs.scope == "system":
        env["HOME"] = str(inputs.home)
    return env


def merge_env(
    defaults: Mapping[str, str], configured: Mapping[str, str], enforced: Mapping[str, str]
) -> dict[str, str]:
    """defaults < configured < enforced; a key keeps the position it first appeared at."""
    env = {**defaults, **enforced}
    for name, value in configured.items():
        if name not in enforced:
            env[name] = value
    return env


def _writable(inputs: RenderInputs, *extra: str | None) -> tuple[Path, ...]:
    """Data dir plus configured stores outside it (e.g. OLLAMA_MODELS on another disk)."""
    dirs = [inputs.paths.data_dir]
    for value in extra:
        if value and not Path(value).is_relative_to(inputs.paths.data_dir):
            dirs.append(Path(value))
    return tuple(dirs)


def _workdir(inputs: RenderInputs) -> Path:
    return inputs.home if inputs.scope == "user" else inputs.paths.data_dir


def ollama_spec(config: Config, inputs: RenderInputs) -> ServiceSpec:
    if inputs.ollama_bin is None:
        raise StackctlError(
            "cannot find the ollama executable (not on PATH, nor in Homebrew's bin): "
            "run `stackctl up` to install it"
        )
    defaults = {**_base_env(inputs), **OLLAMA_TUNING}
    if inputs.scope == "system":
        defaults["OLLAMA_MODELS"] = str(inputs.paths.ollama_models)
    # Ollama binds OLLAMA_HOST; it stays on loopback whatever ollama.env says.
    enforced = {"OLLAMA_HOST": f"{LOOPBACK}:{config.ollama.port}"}
    env = merge_env(defaults, config.ollama.env, enforced)
    return ServiceSpec(
        service="ollama",
        description=info("ollama").description,
        argv=[str(inputs.ollama_bin), "serve"],
        env=env,
        secret_names=(),
        uses_secrets_file=False,
        working_directory=_workdir(inputs),
        depends_on=starts_after(config, inputs, "ollama"),
        writable=_writable(inputs, env.get("OLLAMA_MODELS")),
    )


def vllm_spec(config: Config, inputs: RenderInputs) -> ServiceSpec:
    head = config.cluster is not None and config.cluster.is_head
    for arg in config.vllm.args:
        flag = arg.split("=", 1)[0]
        if head and flag in CLUSTER_VLLM_FLAGS:
            raise StackctlError(
                f"vllm.args: {flag} is set by stackctl in a cluster (tensor parallel = GPUs "
                "per node, pipeline parallel = cluster.nodes): remove it from vllm.args"
            )
        if flag in RESERVED_VLLM_FLAGS:
            raise StackctlError(
                f"vllm.args: {flag} is set by stackctl (vLLM listens on {LOOPBACK} at "
                "vllm.port as vllm.served_model_name; an API key goes in secrets.env as "
                "VLLM_API_KEY): remove it from vllm.args"
            )
    vllm_bin = inputs.vllm_venv / "bin"
    defaults = {
        **_base_env(inputs, vllm_bin),
        "HF_HOME": str(inputs.paths.hf_home),
        "VLLM_NO_USAGE_STATS": "1",  # vLLM reports usage to its authors unless told not to
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",  # log lines reach the journal / log file as they happen
    }
    env = merge_env(defaults, config.vllm.env, {})
    argv = [
        str(vllm_bin / "vllm"),
        "serve",
        config.vllm.model,
        "--host",
        LOOPBACK,
        "--port",
        str(config.vllm.port),
        "--served-model-name",
        config.vllm.served_model_name,
        *config.vllm.args,
    ]
    secret_names = info("vllm").secrets
    if head:
        argv, env = _vllm_on_the_cluster(config, inputs, argv, env)
        secret_names += info("ray").secrets
    return ServiceSpec(
        service="vllm",
        description=info("vllm").description,
        argv=argv,
        env=env,
        secret_names=secret_names,
        uses_secrets_file=True,
        working_directory=inputs.paths.data_dir,
        depends_on=starts_after(config, inputs, "vllm"),
        writable=_writable(inputs, env.get("HF_HOME")),
    )


# --- a Ray cluster node (issue 12) -------------------------------------------------------------

RAY_DRAIN_SECONDS = 10  # below the ray unit's TimeoutStopSec (30 s) and launchd's ExitTimeOut

# vLLM's multi-node flags, which stackctl sets on the head of a cluster
CLUSTER_VLLM_FLAGS = (
    "--distributed-executor-backend",
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
)


def _cluster_section(config: Config) -> ClusterSection:
    if config.cluster is None:
        raise StackctlError("the ray service runs in a cluster only: add a cluster: section")
    return config.cluster


# Every Ray process stackctl starts (a node, a driver): token authentication, no usage reports
RAY_ENFORCED_ENV = {
    "RAY_AUTH_MODE": "token",  # the token is RAY_AUTH_TOKEN, from secrets.env
    "RAY_USAGE_STATS_ENABLED": "0",
}


def ray_spec(config: Config, inputs: RenderInputs) -> ServiceSpec:
    """`ray start --block`: the head (`--head --port P`, its dashboard on loopback) or a
    worker (`--address HEAD:P`), with this node's address, GPUs and block of ports."""
    cluster = _cluster_section(config)
    ports = ray_ports(cluster.node_ports)
    ray_bin = ray_venv(inputs.paths.venvs_dir, inputs.vllm_venv, inputs.backend) / "bin"
    argv = [str(ray_bin / "ray"), "start", "--block"]
    if cluster.is_head:
        argv += [
            "--head",
            "--port",
            str(cluster.port),
            # The dashboard (and its Jobs API, which runs code on every node) answers on
            # loopback only; token auth guards it too.
            "--include-dashboard",
            "true",
            "--dashboard-host",
            LOOPBACK,
            "--dashboard-port",
            str(ports.dashboard),
            "--ray-client-server-port",
            str(ports.client_server),
        ]
    else:
        argv += ["--address", join_address(cluster.head, cluster.port)]
    address = node_address(cluster.address, cluster.head, cluster.port)
    services = [s.name for s in stack_services(config, inputs.backend)]
    argv += [
        "--node-ip-address",
        address,
        # named by its raylet's address, unique even for two nodes on one host
        "--node-name",
        f"{address}:{ports.node_manager}",
        # what this node runs, for `stackctl cluster status`
        "--labels",
        f"{NODE_SERVICES_LABEL}={'.'.join(services)}",
        "--num-gpus",
        str(inputs.gpu_count),
        "--node-manager-port",
        str(ports.node_manager),
        "--object-manager-port",
        str(ports.object_manager),
        "--dashboard-agent-listen-port",
        str(ports.dashboard_agent),
        "--dashboard-agent-grpc-port",
        str(ports.dashboard_agent_grpc),
        "--runtime-env-agent-port",
        str(ports.runtime_env_agent),
        "--metrics-export-port",
        str(ports.metrics_export),
        "--min-worker-port",
        str(ports.min_worker),
        "--max-worker-port",
        str(ports.max_worker),
        # Ray's session files and sockets in stackctl's data dir, not /tmp/ray
        "--temp-dir",
        str(ray_temp_dir(inputs.paths.data_dir)),
        "--disable-usage-stats",
    ]
    defaults = {
        **_base_env(inputs, ray_bin),
        "PYTHONUNBUFFERED": "1",
        # On SIGTERM Ray 2.60 drains the node for up to 30 s (ray/_private/ray_constants.py)
        # while actors run there, as vLLM's always do (they cannot move): the unit's whole
        # stop timeout, ending in SIGKILL. 10 s leaves Ray the time to stop its processes.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": str(RAY_DRAIN_SECONDS),
        # vLLM's workers on this node are Ray's processes and inherit this environment:
        # where the weights are, and no usage reports
        "HF_HOME": str(inputs.paths.hf_home),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if inputs.backend == "ollama":  # each Serve replica forwards to its own node's Ollama
        defaults["STACKCTL_OLLAMA_URL"] = config.ollama.url
    enforced = RAY_ENFORCED_ENV
    return ServiceSpec(
        service="ray",
        description=info("ray").description,
        argv=argv,
        env=merge_env(defaults, {}, enforced),
        secret_names=info("ray").secrets,
        uses_secrets_file=True,
        working_directory=inputs.paths.data_dir,
        depends_on=starts_after(config, inputs, "ray"),
        writable=_writable(inputs),
    )


# --- Ray Serve in front of a cluster's Ollamas (issue 12) -----------------------------------


def ray_serve_spec(config: Config, inputs: RenderInputs) -> ServiceSpec:
    """The head's Ray Serve application (stackctl/ray_serve/ollama_app.py) under the Ray
    venv's Python, started through stackctl's own Python, which knows where that file is
    installed (`python -m stackctl.ray_serve` execs it). It waits for `cluster.nodes` nodes,
    then serves Ollama's API on 127.0.0.1:`cluster.serve_port` with a replica per node."""
    cluster = _cluster_section(config)
    ray_python = ray_venv(inputs.paths.venvs_dir, inputs.vllm_venv, inputs.backend) / "bin/python"
    address = node_address(cluster.address, cluster.head, cluster.port)
    argv = [str(inputs.python), "-m", "stackctl.ray_serve", str(ray_python)]
    argv += ["--address", join_address(address, cluster.port), "--nodes", str(cluster.nodes)]
    argv += ["--host", LOOPBACK, "--port", str(cluster.serve_port)]
    defaults = {**_base_env(inputs, ray_python.parent), "PYTHONUNBUFFERED": "1"}
    enforced = RAY_ENFORCED_ENV
    return ServiceSpec(
        service="ray-serve",
        description=info("ray-serve").description,
        argv=argv,
        env=merge_env(defaults, {}, enforced),
        secret_names=info("ray-serve").secrets,
        uses_secrets_file=True,
        working_directory=inputs.paths.data_dir,
        depends_on=starts_after(config, inputs, "ray-serve"),
        writable=_writable(inputs),
    )


# ---------------------------------------------------------------------------------------------


def _vllm_on_the_cluster(
    config: Config, inputs: RenderInputs, argv: list[str], env: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """On the head: vLLM across the nodes (tensor parallel = GPUs per node, pipeline
    parallel = nodes), started by `stackctl cluster wait` once every node has joined."""
    cluster = _cluster_section(config)
    if inputs.gpu_count < 1:
        raise StackctlError(
            "vLLM on a cluster needs NVIDIA GPUs on the head, and nvidia-smi finds none here"
        )
    distributed = [
        "--distributed-executor-backend",
        "ray",
        "--tensor-parallel-size",
        str(inputs.gpu_count),
        "--pipeline-parallel-size",
        str(cluster.nodes),
    ]
    address = node_address(cluster.address, cluster.head, cluster.port)
    enforced = {"RAY_ADDRESS": join_address(address, cluster.port), "RAY_AUTH_MODE": "token"}
    wait = [str(inputs.python), "-m", "stackctl", "--config", str(inputs.config_path)]
    wait += ["cluster", "wait", "--"]
    return [*wait, *argv, *distributed], merge_env(env, {}, enforced)


def openwebui_base_url(config: Config, backend: str) -> str:
    """Where Open WebUI finds models: the proxy's /v1, or (proxy disabled) the backend's own
    OpenAI-compatible /v1 (Ollama has one built in), so Open WebUI always speaks OpenAI."""
    if config.proxy.enabled:
        return f"http://{LOOPBACK}:{config.proxy.port}/v1"
    return f"http://{LOOPBACK}:{config.backend_port(backend)}/v1"  # type: ignore[arg-type]


# Open WebUI's embedding model cache under its DATA_DIR (its own default, set explicitly so
# stackctl knows where to look: see setup/openwebui_offline.py).
EMBEDDING_CACHE = "cache/embedding/models"


# Open WebUI on the network (behind the front): no open signup. Its first admin is created
# headless from WEBUI_ADMIN_EMAIL/WEBUI_ADMIN_PASSWORD (secrets.env) in the app's lifespan,
# before uvicorn binds its port (open_webui/main.py lifespan -> utils/auth.py
# create_admin_user, when no user exists); signup would still make the first account admin
# on an empty database whatever ENABLE_SIGNUP says (routers/auths.py signup, 0.12.4), and
# with users it answers 403 while ENABLE_SIGNUP is false. New people are added by the admin
# (Admin Panel > Users); DEFAULT_USER_ROLE stays Open WebUI's own, pending.
EXPOSED_OPENWEBUI = {"ENABLE_SIGNUP": "false"}


def openwebui_spec(config: Config, inputs: RenderInputs) -> ServiceSpec:
    data = inputs.paths.openwebui_data
    defaults = {
        **_base_env(inputs, inputs.openwebui_venv / "bin"),
        "ENV": "prod",  # as in Open WebUI's Docker image: no FastAPI /docs
        "SCARF_NO_ANALYTICS": "true",  # these three: the image's telemetry opt-outs
        "DO_NOT_TRACK": "true",
        "ANONYMIZED_TELEMETRY": "false",
        "PYTHONUNBUFFERED": "1",
        "SENTENCE_TRANSFORMERS_HOME": str(data / EMBEDDING_CACHE),
        # Load the embedding model from that cache when it is there instead of asking
        # huggingface.co for an update at every start (~70 s of retries without internet);
        # the first start still downloads it (open-webui: retrieval/utils.py get_model_path
        # falls back to the model name, which SentenceTransformer then fetches).
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
    }
    enforced = {
        "DATA_DIR": str(data),  # the default is inside the venv: a reinstall would lose the DB
        "OPENAI_API_BASE_URLS": openwebui_base_url(config, inputs.backend),
        "ENABLE_OLLAMA_API": "false",  # models come through the OpenAI connection above
        # stack.yaml stays the truth, not Open WebUI's DB: every setting below is read from
        # the environment at each start (open_webui/models/config.py Config.get returns the
        # env-built default for every key while persistence is off)
        "ENABLE_PERSISTENT_CONFIG": "false",
    }
    if config.openwebui.admin_email:
        enforced["WEBUI_ADMIN_EMAIL"] = config.openwebui.admin_email
    if config.expose:
        enforced.update(EXPOSED_OPENWEBUI)
        if config.tls.domain:  # its public address, for the links it makes (WEBUI_URL)
            enforced["WEBUI_URL"] = f"https://{config.tls.domain}:{config.tls.openwebui_port}"
    return ServiceSpec(
        service="openwebui",
        description=info("openwebui").description,
        argv=[
            str(inputs.openwebui_venv / "bin/open-webui"),
            "serve",
            "--host",
            config.bind_host,
            "--port",
            str(config.openwebui.port),
        ],
        env=merge_env(defaults, config.openwebui.env, enforced),
        secret_names=info("openwebui").secrets,
        uses_secrets_file=True,
        working_directory=data,  # Open WebUI writes .webui_secret_key into its cwd when unset
        depends_on=starts_after(config, inputs, "openwebui"),
        writable=_writable(inputs),
    )


def stackctl_argv(inputs: RenderInputs, *command: str) -> list[str]:
    """A unit's command that is stackctl itself: this interpreter, this config."""
    return [str(inputs.python), "-m", "stackctl", "--config", str(inputs.config_path), *command]


def proxy_spec(config: Config, inputs: RenderInputs) -> ServiceSpec:
    defaults = {**_base_env(inputs, inputs.python.parent), "PYTHONUNBUFFERED": "1"}
    connections = default_connections(config, inputs.backend)
    key_names = tuple(c.api_key_env for c in connections if c.api_key_env)
    return ServiceSpec(
        service="proxy",
        description=info("proxy").description,
        argv=stackctl_argv(
            inputs,
            "proxy",
            "serve",
            # what `up` installed: `backend: auto` re-guessed at boot (nvidia-smi on the
            # unit's PATH, a driver not loaded yet) could point the proxy elsewhere
            "--backend",
            inputs.backend,
            # where it writes each key's last use: the data dir, which it may write (system
            # scope: it runs as another account, whose own paths are not the stack's)
            "--usage-file",
            str(keystore.usage_path(inputs.paths.data_dir)),
        ),
        env=defaults,
        secret_names=key_names,
        uses_secrets_file=True,  # connections' api_key_env values live in secrets.env
        working_directory=inputs.paths.data_dir,
        depends_on=starts_after(config, inputs, "proxy"),
        writable=_writable(inputs),
    )


# --- the HTTPS front (issue 15) -------------------------------------------------------------


def front_spec(config: Config, inputs: RenderInputs) -> ServiceSpec:
    """Caddy, through `stackctl front run`: it writes the Caddyfile from stack.yaml into
    <data dir>/caddy (Caddy's storage too) and execs `caddy run` (stackctl/front.py).

    The unit carries a digest of what the Caddyfile takes from stack.yaml, so a change there
    (tls, the ports) changes the unit and `up` restarts the front."""
    import hashlib

    from stackctl.front import caddyfile

    site = caddyfile(config, inputs.paths.caddy_data, [])
    env = {**_base_env(inputs, inputs.python.parent)}
    env["STACKCTL_FRONT_CONFIG"] = hashlib.sha256(site.encode()).hexdigest()[:16]
    return ServiceSpec(
        service="front",
        description=info("front").description,
        argv=stackctl_argv(inputs, "front", "run", "--data-dir", str(inputs.paths.caddy_data)),
        env=env,
        secret_names=(),
        uses_secrets_file=False,
        working_directory=inputs.paths.data_dir,
        depends_on=starts_after(config, inputs, "front"),
        writable=_writable(inputs),
    )
