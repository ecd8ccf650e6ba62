"""The step that writes stack.yaml when there is none: the services read it too."""

from __future__ import annotations

from stackctl.config_init import check_generated, fill_template
from stackctl.fsutil import atomic_write
from stackctl.plan import Progress, Step
from stackctl.probe import describe_host
from stackctl.setup.context import Context


def config_text(ctx: Context) -> str:
    """A commented stack.yaml for this run (the `config init` template, filled in)."""
    text = fill_template(
        host_summary=describe_host(ctx.facts),
        backend=ctx.backend,
        scope=ctx.scope,
        models=ctx.models,
        vllm_model=ctx.config.vllm.model,
        vllm_served_name=ctx.config.vllm.served_model_name,
    )
    if not ctx.config.openwebui.enabled:
        text = text.replace("openwebui:\n  enabled: true", "openwebui:\n  enabled: false", 1)
    cluster = ctx.config.cluster
    if cluster is not None and not cluster.is_head:  # `up --join`
        from stackctl.setup.cluster import cluster_section_text

        text += cluster_section_text(cluster)
    return text


def config_step(ctx: Context) -> Step:
    """Write stack.yaml (never over an existing one: that is the user's)."""
    path = ctx.config_path

    def apply(progress: Progress) -> None:
        text = config_text(ctx)
        check_generated(text, path, ctx.platform)
        atomic_write(path, text)
        ctx.config.source = path
        progress.note(f"wrote {path}; edit it and run `stackctl up` to change the stack")

    return Step(
        description=f"Write the config file {path}",
        check=path.exists,
        apply=apply,
        files=[f"{path} (0644)"],
    )
