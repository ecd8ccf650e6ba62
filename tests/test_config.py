"""stack.yaml: defaults, every kind of problem with its file and line, and `config` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackctl.config import load, validate_text
from stackctl.errors import ConfigError, StackctlError


def problems(text: str, platform: str = "linux") -> list[str]:
    config, found = validate_text(text, "stack.yaml", platform)  # type: ignore[arg-type]
    assert (config is None) == bool(found)
    return found


def test_no_file_means_defaults(tmp_path: Path) -> None:
    config = load(tmp_path / "missing.yaml")
    assert config.source is None
    assert config.ollama.port == 11434
    assert config.ollama.env == {"OLLAMA_KEEP_ALIVE": "30m"}
    assert config.vllm.served_model_name == "gemma3:27b"
    assert config.proxy.port == 4000 and config.openwebui.port == 3000
    assert config.bind_host == "127.0.0.1"


def test_missing_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "missing.yaml", required=True)
    assert "does not exist: create it with `stackctl config init`" in str(err.value)


def test_full_example_from_the_issue_is_valid() -> None:
    text = """\
backend: auto
scope: user
models: [gemma3:27b]
expose: false
ollama:    {port: 11434, env: {OLLAMA_KEEP_ALIVE: 30m}}
vllm:      {port: 8000, model: google/gemma-3-27b-it, served_model_name: gemma3:27b, args: [], env: {}}
openwebui: {enabled: true, port: 3000, env: {}}
proxy:
  enabled: true
  port: 4000
  api_keys: []
  cors_origins: []
  aliases: {gpt-4o: gemma3:27b}
  model_options: {gemma3:27b: {num_ctx: 8192}}
  connections:
    - {name: lab, mode: openai_compatible, base_url: "http://10.0.0.2:8000/v1", params: {max_tokens: 512}}
"""
    config, found = validate_text(text, "stack.yaml", "linux")
    assert found == []
    assert config is not None
    assert config.proxy.aliases == {"gpt-4o": "gemma3:27b"}
    assert config.proxy.connections[0].params == {"max_tokens": 512}


def test_invalid_yaml_names_line_and_column() -> None:
    assert problems("ollama:\n  port: 1\n   env: {}\n") == [
        "stack.yaml:3:7: invalid YAML: mapping values are not allowed here"
    ]
    assert problems("models: [a,\n") == [
        "stack.yaml:2:1: invalid YAML: expected the node content, but found '<stream end>' "
        "(while parsing a flow node)"
    ]


def test_unknown_key_suggests_the_closest() -> None:
    text = "proxy:\n  enabled: true\n  prot: 4000\n"
    assert problems(text) == ["stack.yaml:3: unknown key 'prot' in proxy; did you mean 'port'?"]


def test_unknown_top_level_key_without_a_close_match_lists_the_known_ones() -> None:
    assert problems("zzz: 1\n") == [
        "stack.yaml:1: unknown key 'zzz' at the top level (known: backend, scope, models, "
        "expose, ollama, vllm, openwebui, proxy, tls, cluster)"
    ]


def test_wrong_types_name_the_key_path_and_what_was_expected() -> None:
    text = "expose: yes please\nollama:\n  port: 99999\nproxy:\n  aliases: [a]\n"
    assert problems(text) == [
        "stack.yaml:1: expose: expected true or false, got the text 'yes please'",
        "stack.yaml:3: ollama.port: expected a port number from 1 to 65535, got int 99999",
        "stack.yaml:5: proxy.aliases: expected a mapping of a model name to a model name "
        "such as gemma3:27b, got a list",
    ]


def test_bad_enum_value_suggests_the_closest() -> None:
    assert problems("backend: olama\n") == [
        "stack.yaml:1: backend: expected one of auto, ollama, vllm, got the text 'olama'; "
        "did you mean 'ollama'?"
    ]


def test_two_services_on_one_port() -> None:
    assert problems("backend: ollama\nproxy:\n  port: 3000\n") == [
        "stack.yaml:3: openwebui.port and proxy.port are both 3000: give each service its own port"
    ]


def test_disabled_service_does_not_take_its_port() -> None:
    assert problems("backend: ollama\nopenwebui: {enabled: false}\nproxy: {port: 3000}\n") == []


def test_expose_without_api_keys() -> None:
    assert problems("expose: true\n") == [
        "stack.yaml:1: expose: true needs API keys for the proxy: set proxy.api_keys_file "
        "(its keys: `stackctl keys add NAME`) or list proxy.api_keys"
    ]
    assert problems("expose: true\nproxy: {api_keys: [sk-local-123456]}\n") == []


def test_vllm_on_macos() -> None:
    assert problems("backend: vllm\n", platform="macos") == [
        "stack.yaml:1: backend: vllm needs Linux with an NVIDIA GPU; on macOS use backend: "
        "ollama (Metal) or backend: auto"
    ]


def test_secret_in_unit_environment_is_refused() -> None:
    found = problems("vllm:\n  env:\n    HF_TOKEN: hf_abc\n")
    assert len(found) == 1
    assert found[0].startswith("stack.yaml:3: vllm.env.HF_TOKEN looks like a secret")
    assert "secrets.env (mode 0600)" in found[0]


def test_connection_fields_are_checked() -> None:
    text = "proxy:\n  connections:\n    - {name: a, mode: openai}\n"
    assert problems(text) == [
        "stack.yaml:3: proxy.connections[0].mode: expected one of ollama, openai_compatible, "
        "got the text 'openai'",
        "stack.yaml:3: proxy.connections[0]: 'base_url' is required",
    ]


def test_model_option_typo_is_caught() -> None:
    text = "proxy:\n  model_options:\n    gemma3:27b: {num_ctxx: 8192}\n"
    assert problems(text) == [
        "stack.yaml:3: unknown Ollama option 'num_ctxx' in proxy.model_options.gemma3:27b; "
        "did you mean 'num_ctx'?"
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = "backend: x\nexpose: true\nproxy:\n  port: 3000\n  prot: 1\n"
    found = problems(text)
    assert [p.split(":")[1] for p in found] == ["1", "2", "4", "5"]


def test_validate_command_exit_codes(tmp_path: Path, stackctl) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("backend: ollama\n")
    result = stackctl("--config", str(good), "config", "validate")
    assert result.code == 0
    assert result.out == f"{good}: ok\n"

    bad = tmp_path / "bad.yaml"
    bad.write_text("proxy:\n  prot: 1\n")
    result = stackctl("--config", str(bad), "config", "validate")
    assert result.code == 1
    assert result.err == (
        f"Error: {bad} is not a valid stackctl config:\n"
        f"  {bad}:2: unknown key 'prot' in proxy; did you mean 'port'?\n"
    )


def test_show_masks_secrets_and_resolves_auto(tmp_path: Path, stackctl) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(
        "backend: ollama\nproxy:\n  api_keys: [sk-very-secret-1]\n  connections:\n"
        "    - {name: up, mode: openai_compatible, base_url: 'http://h:1/v1', api_key: sk-x}\n"
    )
    result = stackctl("--config", str(path), "config", "show", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["proxy"]["api_keys"] == ["********"]
    assert data["proxy"]["connections"][0]["api_key"] == "********"
    assert "sk-very-secret-1" not in result.out and "sk-x" not in result.out
    assert data["backend"] == "ollama" and data["scope"] == "user"


def test_config_path_honours_env_and_option(tmp_path: Path, stackctl, monkeypatch) -> None:
    assert stackctl("config", "path").out.strip().endswith(".config/stackctl/stack.yaml")
    monkeypatch.setenv("STACKCTL_CONFIG", str(tmp_path / "a.yaml"))
    assert stackctl("config", "path").out.strip() == str(tmp_path / "a.yaml")
    assert stackctl("--config", str(tmp_path / "b.yaml"), "config", "path").out.strip() == str(
        tmp_path / "b.yaml"
    )


def test_root_uses_etc(stackctl, monkeypatch, isolated_home: Path) -> None:
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    assert stackctl("config", "path").out.strip() == str(isolated_home / "etc/stackctl/stack.yaml")


def test_secrets_file_keeps_what_a_person_added(tmp_path: Path) -> None:
    from stackctl.secrets import read_env_file, write_env_file

    path = tmp_path / "secrets.env"
    write_env_file(path, {"WEBUI_SECRET_KEY": "one"})
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text(path.read_text() + "# my vLLM key\nVLLM_API_KEY=sk-mine\n")
    write_env_file(path, {"WEBUI_SECRET_KEY": "two", "HF_TOKEN": "hf_x"})
    assert path.read_text().splitlines()[1:] == [
        "WEBUI_SECRET_KEY=two",
        "# my vLLM key",
        "VLLM_API_KEY=sk-mine",
        "HF_TOKEN=hf_x",
    ]
    assert read_env_file(path)["VLLM_API_KEY"] == "sk-mine"
    path.chmod(0o644)
    with pytest.raises(StackctlError, match=r"others can read it: run `chmod 600 "):
        read_env_file(path)


def test_no_cluster_section_is_one_machine() -> None:
    config, found = validate_text("backend: vllm\n", "stack.yaml", "linux")
    assert found == [] and config is not None
    assert config.cluster is None
    assert "cluster" not in config.to_dict()


def test_cluster_section_from_the_issue() -> None:
    head = "cluster:\n  role: head\n  address: 10.0.0.5\n  port: 6379\n  nodes: 2\n"
    config, found = validate_text(head, "stack.yaml", "linux")
    assert found == [] and config is not None and config.cluster is not None
    assert (config.cluster.role, config.cluster.address) == ("head", "10.0.0.5")
    assert (config.cluster.port, config.cluster.nodes, config.cluster.is_head) == (6379, 2, True)
    assert config.to_dict()["cluster"]["nodes"] == 2
    worker = "cluster: {role: worker, head: 10.0.0.5}\n"
    config, found = validate_text(worker, "stack.yaml", "linux")
    assert found == [] and config is not None and config.cluster is not None
    assert (config.cluster.head, config.cluster.port, config.cluster.address) == (
        "10.0.0.5",
        6379,
        "",
    )
    assert not config.cluster.is_head


def test_cluster_problems_name_file_line_and_key() -> None:
    assert problems("cluster:\n  role: hed\n  port: 70000\n  nodse: 2\n") == [
        "stack.yaml:2: cluster.role: expected one of head, worker, got the text 'hed'; "
        "did you mean 'head'?",
        "stack.yaml:3: cluster.port: expected a port number from 1 to 65535, got int 70000",
        "stack.yaml:4: unknown key 'nodse' in cluster; did you mean 'nodes'?",
    ]
    assert problems("cluster:\n  port: 6379\n") == ["stack.yaml:2: cluster: 'role' is required"]
    assert problems("cluster:\n  role: head\n  nodes: 0\n  address: 'a b'\n") == [
        "stack.yaml:3: cluster.nodes: expected a number of nodes from 1 to 256, got int 0",
        "stack.yaml:4: cluster.address: expected this node's host name or IP address, "
        "got the text 'a b'",
    ]


def test_cluster_roles_need_their_own_keys() -> None:
    assert problems("cluster:\n  role: worker\n") == [
        "stack.yaml:2: cluster: a worker needs the head's address: set cluster.head (or join "
        "with `stackctl up --join HOST:PORT --token T`, which writes it)"
    ]
    assert problems("cluster:\n  role: head\n  head: 10.0.0.5\n") == [
        "stack.yaml:3: cluster.head is the head's address, for workers: remove it from the "
        "head's config (the head's own address is cluster.address)"
    ]
    assert problems("cluster:\n  role: worker\n  head: h1\n  nodes: 3\n") == [
        "stack.yaml:4: cluster.nodes is counted on the head: remove it from a worker's config"
    ]
