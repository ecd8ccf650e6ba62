"""`stackctl up` in a cluster, planned (no services started): the head's sizing over every
node's GPUs, a worker's `up --join` (its plan, its versions, what it refuses), and the
config it records."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackctl.config import load
from stackctl.setup import UpOptions, resolve_context
from stackctl.setup.cluster import cluster_section_text
from stackctl.setup.configfile import config_text
from stackctl.setup.steps import build_steps
from tests.fakes.installer import FakeBin
from tests.ports import free_ports

RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564}
TOKEN = "cluster-token-0123456789"


@pytest.fixture
def gpu_node(fake_bin: FakeBin, isolated_home: Path, monkeypatch) -> Path:
    """A Linux box with one 24 GB GPU; returns where its stack.yaml goes."""
    fake_bin.remove("ollama")
    fake_bin.scenario(gpus=[RTX_4090], linger="yes")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")  # Gemma is gated
    path = isolated_home / ".config/stackctl/stack.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def head_config(path: Path, nodes: int, model: str = "google/gemma-3-27b-it") -> None:
    vllm, proxy, webui = free_ports(3)
    path.write_text(
        f"backend: vllm\nvllm: {{port: {vllm}, model: {model}}}\nproxy: {{port: {proxy}}}\n"
        f"openwebui: {{port: {webui}}}\ncluster: {{role: head, nodes: {nodes}}}\n"
    )


def test_the_head_refuses_a_model_the_cluster_cannot_hold(gpu_node: Path, stackctl) -> None:
    head_config(gpu_node, nodes=2)
    result = stackctl("up", "--yes")
    assert result.code == 1
    assert result.err == (
        "Error: google/gemma-3-27b-it needs about 64 GB of GPU memory (bf16), and the cluster "
        "(2 nodes, 1 GPU each) has 48 GB, about 43 GB of it usable: raise cluster.nodes in "
        f"{gpu_node} and join as many nodes, or a smaller model (vllm.model: "
        "google/gemma-3-12b-it, which fits)\n"
    )
    head_config(gpu_node, nodes=3)  # 3 x 24 GB: 65 GB usable
    result = stackctl("up", "--dry-run")
    assert result.code == 0, result.err
    assert "vllm 'ray[default]' --torch-backend=auto" in result.out


def test_doctor_sizes_the_model_over_the_cluster(gpu_node: Path, stackctl) -> None:
    head_config(gpu_node, nodes=3)
    result = stackctl("doctor")
    assert (
        "google/gemma-3-27b-it needs about 64 GB; the cluster (3 nodes, 1 GPU each) has 72 GB, "
        "about 65 GB of it usable"
    ) in result.out


def join_options(**pins: str) -> UpOptions:
    return UpOptions(yes=True, join="10.0.0.5:6379", token=TOKEN, pins=pins)


def test_a_worker_plans_the_heads_versions_and_no_model(gpu_node: Path) -> None:
    options = join_options(vllm="0.10.1.1", ray="2.60.0", python="3.11")
    ctx = resolve_context(load(gpu_node), gpu_node, options)
    assert ctx.backend == "vllm" and [s.name for s in ctx.services] == ["ray"]
    steps = [step.description for step in build_steps(ctx)]
    assert not [s for s in steps if "Download" in s or "Open WebUI" in s]
    assert "Ask the head's Ray at 10.0.0.5:6379 whether it takes the token" in steps
    commands = [c for step in build_steps(ctx) for c in step.commands]
    assert any(c.endswith("vllm==0.10.1.1 'ray[default]==2.60.0' --torch-backend=auto")
               for c in commands), commands  # fmt: skip
    # a new stack.yaml records the section
    assert config_text(ctx).endswith(cluster_section_text(ctx.config.cluster))  # type: ignore[arg-type]
    assert load_text_cluster(config_text(ctx)) == ("worker", "10.0.0.5", 6379)


def load_text_cluster(text: str) -> tuple[str, str, int]:
    from stackctl.config import validate_text

    config, problems = validate_text(text, "stack.yaml", "linux")
    assert problems == [] and config is not None and config.cluster is not None
    return config.cluster.role, config.cluster.head, config.cluster.port


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            UpOptions(join="10.0.0.5", token=TOKEN),
            "--join 10.0.0.5: expected the head's HOST:PORT, e.g. --join 10.0.0.5:6379 "
            "(`stackctl cluster join-command` on the head prints the whole command)",
        ),
        (
            UpOptions(join="10.0.0.5:6379"),
            "--join needs the cluster's --token: `stackctl cluster join-command` on the head "
            "prints the whole command",
        ),
        (
            UpOptions(join="10.0.0.5:6379", token="short"),
            "--token: that is not a cluster token (16 to 512 letters, digits and -_.~+/=): "
            "copy it whole from `stackctl cluster join-command` on the head",
        ),
    ],
)
def test_join_refuses_what_cannot_be_a_join(gpu_node: Path, options, message) -> None:
    from stackctl.errors import StackctlError

    with pytest.raises(StackctlError) as err:
        resolve_context(load(gpu_node), gpu_node, options)
    assert str(err.value) == message


def test_a_worker_with_another_gpu_count_than_the_head_is_refused(gpu_node: Path, stackctl) -> None:
    join = ["up", "--join", "10.0.0.5:6379", "--token", TOKEN, "--vllm-version", "0.10.1.1"]
    result = stackctl(*join, "--gpus", "2", "--yes")
    assert result.code == 1
    assert result.err == (
        "Error: this machine has 1 NVIDIA GPU and the cluster's head 2: vLLM splits the model "
        "over the same number of GPUs on every node (tensor parallel = 2), so every node needs "
        "2. Join a machine with 2 GPUs, or make the cluster of machines that are alike\n"
    )
    assert not gpu_node.exists()  # refused before anything was written
    result = stackctl(*join, "--gpus", "1", "--dry-run")
    assert result.code == 0, result.err
    assert "Blocked" not in result.out
    result = stackctl("up", "--gpus", "1", "--dry-run")
    assert result.err == "Error: --gpus goes with --join HOST:PORT (a worker joining a cluster)\n"


def test_a_head_does_not_join_another_cluster(gpu_node: Path, stackctl) -> None:
    head_config(gpu_node, nodes=2)
    result = stackctl("up", "--join", "10.0.0.9:6379", "--token", TOKEN, "--yes")
    assert result.code == 1
    assert result.err == (
        f"Error: {gpu_node} makes this machine the head, not a worker of 10.0.0.9:6379: edit "
        "its cluster: section (or remove it), then run the join command again\n"
    )
    result = stackctl("up", "--token", TOKEN, "--dry-run")
    assert result.err == "Error: --token goes with --join HOST:PORT (a worker joining a cluster)\n"


def test_doctor_on_a_worker_checks_the_head_and_the_versions(
    gpu_node: Path, isolated_home: Path, stackctl
) -> None:
    from stackctl.cluster_join import record_head_versions

    (closed,) = free_ports(1)
    gpu_node.write_text(f"cluster: {{role: worker, head: 127.0.0.1, port: {closed}}}\n")
    data = isolated_home / ".local/share/stackctl"
    venv = data / "venvs/vllm"
    site = venv / "lib/python3.11/site-packages"
    for name, version in (("vllm", "0.10.0"), ("ray", "2.60.0")):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.9\n")
    record_head_versions(data, {"vllm": "0.10.1.1", "ray": "2.60.0", "python": "3.11"})
    out = stackctl("doctor").out
    assert (
        f"the head's Ray at 127.0.0.1:{closed} cannot be reached from here (Connection refused): "
        f"check `stackctl status` on the head, and open TCP port {closed} (and the head's "
        "cluster.node_ports block) to this machine in the head's firewall"
    ) in out
    assert (
        "vLLM 0.10.0 here, the head runs 0.10.1.1 (Ray refuses a node whose Ray or Python "
        "differs; vLLM's workers must match): run `stackctl cluster join-command` on the head "
        "and the command it prints here (it installs the head's versions)"
    ) in out
    assert "Ray 2.60.0, as on the head" in out and "Python 3.11, as on the head" in out
    assert "gemma" not in out  # the model is the head's business


def test_a_worker_keeps_the_versions_it_joined_with(gpu_node: Path) -> None:
    from stackctl.cluster_join import record_head_versions

    gpu_node.write_text("cluster: {role: worker, head: 10.0.0.5}\n")
    ctx = resolve_context(load(gpu_node), gpu_node, UpOptions(yes=True, upgrade=True))
    record_head_versions(ctx.paths.data_dir, {"vllm": "0.10.1.1", "ray": "2.60.0"})
    commands = [c for step in build_steps(ctx) for c in step.commands]
    assert any("vllm==0.10.1.1 'ray[default]==2.60.0'" in c for c in commands), commands


def test_joining_adds_the_cluster_section_to_an_existing_stack_yaml(gpu_node: Path) -> None:
    from stackctl.plan import Progress
    from stackctl.setup.cluster import join_config_step

    gpu_node.write_text("# mine\nbackend: vllm\nproxy: {port: 4100}\n")
    ctx = resolve_context(load(gpu_node), gpu_node, join_options(vllm="0.10.1.1"))
    step = join_config_step(ctx)
    assert not step.check()
    step.apply(Progress())
    assert step.check()
    text = gpu_node.read_text()
    assert text.startswith("# mine\nbackend: vllm\nproxy: {port: 4100}\n")  # kept as it was
    config = load(gpu_node)
    assert config.proxy.port == 4100 and config.cluster is not None
    assert (config.cluster.role, config.cluster.head, config.cluster.port) == (
        "worker",
        "10.0.0.5",
        6379,
    )
