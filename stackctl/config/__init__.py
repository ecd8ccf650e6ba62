"""stack.yaml: loading, validating and resolving the config.

`load(path)` returns a `Config` or raises `ConfigError` listing every problem with its file
and line. With no file, the built-in defaults apply: stackctl works without a config.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from stackctl.config.model import (
    PROXY_KEY_PATTERN,
    PROXY_KEY_RULE,
    ClusterSection,
    Config,
    Connection,
    OllamaSection,
    OpenWebUISection,
    ProxySection,
    TlsSection,
    VllmSection,
    default_connections,
)
from stackctl.config.schema import (
    Any_,
    Bool,
    Enum,
    EnvMap,
    Int,
    ListOf,
    MapOf,
    Number,
    Port,
    Problems,
    Section,
    Str,
    suggestion,
)
from stackctl.errors import ConfigError
from stackctl.ollama_options import OPTION_TYPES
from stackctl.paths import Platform, current_platform, paths_for
from stackctl.registry import info, stack_services
from stackctl.types import BACKENDS, Backend

__all__ = [
    "ClusterSection",
    "Config",
    "Connection",
    "default_connections",
    "load",
    "validate_text",
]

MODEL_NAME = r"^[A-Za-z0-9_][A-Za-z0-9._:/@-]{0,349}$"
# A DNS name Caddy can get an ACME certificate for: labels of letters, digits and hyphens
DOMAIN_NAME = r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
# a host name, an IPv4 address or an IPv6 one (no brackets, no port)
HOST_ADDRESS = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252}[A-Za-z0-9])?$"


def _schema(secrets_hint: str) -> Section:
    env = EnvMap(secrets_hint)
    model = Str(MODEL_NAME, "a model name such as gemma3:27b", allow_empty=False)
    connection = Section(
        {
            "name": Str(
                r"^[A-Za-z0-9_.-]+$", "a name of letters, digits, - _ .", allow_empty=False
            ),
            "mode": Enum("ollama", "openai_compatible"),
            "base_url": Str(r"^https?://[^\s/]+(/\S*)?$", "an http(s) URL", allow_empty=False),
            "api_key": Str(),
            "api_key_env": Str(r"^[A-Za-z_][A-Za-z0-9_]*$", "an environment variable name"),
            "params": MapOf(Any_(), key_what="a parameter name"),
        },
        required=("name", "mode", "base_url"),
    )
    return Section(
        {
            "backend": Enum("auto", "ollama", "vllm"),
            "scope": Enum("user", "system"),
            "models": ListOf(model),
            "expose": Bool(),
            "ollama": Section({"port": Port(), "env": env}),
            "vllm": Section(
                {
                    "port": Port(),
                    "model": Str(MODEL_NAME, "a Hugging Face model id or path", allow_empty=False),
                    "served_model_name": model,
                    "args": ListOf(Str()),
                    "env": env,
                }
            ),
            "openwebui": Section(
                {
                    "enabled": Bool(),
                    "port": Port(),
                    "env": env,
                    "admin_email": Str(r"^[^@\s]+@[^@\s]+$", "an email address"),
                }
            ),
            "proxy": Section(
                {
                    "enabled": Bool(),
                    "port": Port(),
                    "api_keys": ListOf(Str(PROXY_KEY_PATTERN, PROXY_KEY_RULE)),
                    "api_keys_file": Str(),
                    "cors_origins": ListOf(
                        Str(r"^(\*|https?://\S+)$", "'*' or an origin like http://host:port")
                    ),
                    "aliases": MapOf(model, key_what="a model name"),
                    "model_options": MapOf(
                        MapOf(Any_(), key_what="an Ollama option"), key_what="a model name"
                    ),
                    "connections": ListOf(connection),
                    "max_body_mb": Int(1, 1024, "megabytes"),
                    "max_answer_mb": Int(1, 4096, "megabytes"),
                    "max_connections": Int(1, 1_000_000, "connections"),
                    "header_timeout": Number(0.1),
                    "connect_timeout": Number(0.1),
                    "read_timeout": Number(1),
                    "models_cache_seconds": Number(0),
                }
            ),
            "tls": Section(
                {
                    "domain": Str(DOMAIN_NAME, "a domain name such as llm.example.com"),
                    "cert": Str(r"^\S", "the path of a PEM certificate file"),
                    "key": Str(r"^\S", "the path of a PEM private key file"),
                    "port": Port(),
                    "openwebui_port": Port(),
                }
            ),
            "cluster": Section(
                {
                    "role": Enum("head", "worker"),
                    "head": Str(HOST_ADDRESS, "the head's host name or IP address"),
                    "address": Str(HOST_ADDRESS, "this node's host name or IP address"),
                    "port": Port(),
                    "nodes": Int(1, 256, "a number of nodes"),
                    "node_ports": Int(1024, 64535, "the first of 1000 free ports"),
                    "serve_port": Port(),
                },
                required=("role",),
            ),
        }
    )


def _build(data: dict, source: Path | None, lines: dict[str, int]) -> Config:
    """Turn validated plain data into a Config, defaults filled in."""
    proxy = dict(data.get("proxy") or {})
    cluster = data.get("cluster") or {}
    proxy["connections"] = [Connection(**c) for c in proxy.get("connections") or []]
    return Config(
        backend=data.get("backend", "auto"),
        scope=data.get("scope"),
        models=data.get("models"),
        expose=data.get("expose", False),
        ollama=OllamaSection(**(data.get("ollama") or {})),
        vllm=VllmSection(**(data.get("vllm") or {})),
        openwebui=OpenWebUISection(**(data.get("openwebui") or {})),
        proxy=ProxySection(**proxy),
        tls=TlsSection(**(data.get("tls") or {})),
        # a section whose role was wrong was reported already: build what is usable
        cluster=ClusterSection(**cluster) if "role" in cluster else None,
        source=source,
        lines=lines,
    )


def _cross_checks(config: Config, out: Problems, platform: Platform) -> None:
    """Problems between keys: shared ports, exposure without keys, impossible backends.

    Which backend `auto` means depends on the host's GPUs, which loading a config does not
    probe: the ports are checked against each backend `auto` may become."""
    line = out.lines.get
    if config.backend == "vllm" and platform == "macos":
        out.add(
            line("backend"),
            "backend: vllm needs Linux with an NVIDIA GPU; on macOS use backend: ollama "
            "(Metal) or backend: auto",
        )
    shared: dict[tuple[str, str], int] = {}  # (key, other key) -> the port both name
    backends: tuple[Backend, ...] = BACKENDS if config.backend == "auto" else (config.backend,)
    for backend in backends:
        ports = [(_port_key(s.name), s.port) for s in stack_services(config, backend)]
        for i, (key, port) in enumerate(ports):
            for other, other_port in ports[:i]:
                if port == other_port:
                    shared.setdefault((key, other), port)
    for (key, other), port in shared.items():
        out.add(
            line(key) or line(other),
            f"{key} and {other} are both {port}: give each service its own port",
        )
    if config.expose:
        if not config.proxy.enabled:
            out.add(
                line("expose"),
                "expose: true needs the proxy (it is the only door to the models): "
                "set proxy.enabled: true or expose: false",
            )
        elif not config.proxy.api_keys and not config.proxy.api_keys_file:
            out.add(
                line("expose"),
                "expose: true needs API keys for the proxy: set proxy.api_keys_file "
                "(its keys: `stackctl keys add NAME`) or list proxy.api_keys",
            )
    _tls_checks(config, out)
    if config.cluster is not None:
        _cluster_checks(config.cluster, out)
    names = [c.name for c in config.proxy.connections]
    for i, name in enumerate(names):
        if name in names[:i]:
            out.add(
                line("proxy.connections"), f"proxy.connections: the name '{name}' is used twice"
            )
    for model, options in config.proxy.model_options.items():
        for option in options:
            if option not in OPTION_TYPES:
                out.add(
                    line(f"proxy.model_options.{model}") or line("proxy.model_options"),
                    f"unknown Ollama option '{option}' in proxy.model_options.{model}"
                    + suggestion(option, list(OPTION_TYPES)),
                )


def _tls_checks(config: Config, out: Problems) -> None:
    """The front's keys together: a certificate needs its key (and the reverse), the files
    must be there, and its two ports must differ from each other and from the services'."""
    tls, line = config.tls, out.lines.get
    if bool(tls.cert) != bool(tls.key):
        given, missing = ("tls.cert", "tls.key") if tls.cert else ("tls.key", "tls.cert")
        out.add(
            line(given),
            f"{given} needs {missing} too (a certificate and its private key, both PEM files); "
            "or remove both to use Caddy's local CA",
        )
    for key in ("cert", "key"):
        value = getattr(tls, key)
        if value and not Path(value).expanduser().is_file():
            out.add(line(f"tls.{key}"), f"tls.{key}: {value} is not a file")
    if not config.expose:
        return  # no front: its ports are not used (the shared-port check covers tls.port)
    for other in stack_services(config, "ollama") + stack_services(config, "vllm"):
        if other.port == tls.openwebui_port:
            key = f"{info(other.name).section}.port"
            out.add(
                line("tls.openwebui_port") or line(key),
                f"tls.openwebui_port and {key} are both {other.port}: give each its own port",
            )
            return


def _port_key(service: str) -> str:
    entry = info(service)
    return f"{entry.section}.{entry.port_key}"


def _cluster_checks(cluster: ClusterSection, out: Problems) -> None:
    """What each role needs: a worker the head's address; the head no `head` of its own."""
    line = out.lines.get
    if cluster.role == "worker" and not cluster.head:
        out.add(
            line("cluster.role") or line("cluster"),
            "cluster: a worker needs the head's address: set cluster.head (or join with "
            "`stackctl up --join HOST:PORT --token T`, which writes it)",
        )
    if cluster.role == "head" and cluster.head:
        out.add(
            line("cluster.head"),
            "cluster.head is the head's address, for workers: remove it from the head's config "
            "(the head's own address is cluster.address)",
        )
    if cluster.role == "worker" and "cluster.nodes" in out.lines:
        out.add(
            line("cluster.nodes"),
            "cluster.nodes is counted on the head: remove it from a worker's config",
        )


def validate_text(
    text: str, source: str = "stack.yaml", platform: Platform | None = None
) -> tuple[Config | None, list[str]]:
    """Validate config text. Returns the config (None when unusable) and every problem."""
    platform = platform or current_platform()
    secrets_hint = str(paths_for(platform).secrets_file)
    out = Problems(source)
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            reason = exc.problem or "cannot parse"
            if exc.context:
                reason += f" ({exc.context})"
            where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
            return None, [f"{where}: invalid YAML: {reason}"]
        if node is None:
            data: dict = {}
        else:
            data = _schema(secrets_hint).check(
                node, "", out, lambda n: loader.construct_object(n, deep=True)
            )
    finally:
        loader.dispose()
    if data is None:
        return None, out.items
    config = _build(data, Path(source), out.lines)
    _cross_checks(config, out, platform)
    problems = sorted(out.items, key=_line_number)
    return (None if problems else config), problems


def _line_number(problem: str) -> int:
    match = re.match(r"^.*?:(\d+): ", problem)
    return int(match.group(1)) if match else 0


def load(
    path: Path | str | None, platform: Platform | None = None, *, required: bool = False
) -> Config:
    """Load and validate a config file; a missing file means the defaults (unless required)."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(
                str(path), ["the file does not exist: create it with `stackctl config init`"]
            ) from None
        return Config(source=None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read it: {exc}"]) from None
    config, problems = validate_text(text, str(path), platform)
    if problems or config is None:
        raise ConfigError(str(path), problems)
    return config
