"""The step that writes stack.yaml when there is none: the services read it too."""

from __future__ import annotations

from stackctl.fsutil import atomic_write
from stackctl.paths import templates_dir
from stackctl.plan import Progress, Step
from stackctl.setup.context import Context


def config_text(ctx: Context) -> str:
    """A commented stack.yaml for this run (the `config init` template, filled in)."""
    from stackctl.probe import describe_host

    template = (templates_dir() / "stack.yaml.tmpl").read_text(encoding="utf-8")
    text = template.format(
        host_summary=describe_host(ctx.facts),
        backend=ctx.backend,
        scope=ctx.scope,
        models=", ".join(f'"{m}"' for m in ctx.models),
        vllm_model=ctx.config.vllm.model,
        vllm_served_name=f'"{ctx.config.vllm.served_model_name}"',
    )
    if not ctx.config.openwebui.enabled:
        text = text.replace("openwebui:\n  enabled: true", "openwebui:\n  enabled: false", 1)
    return text


def config_step(ctx: Context) -> Step:
    """Write stack.yaml (never over an existing one: that is the user's)."""
    path = ctx.config_path

    def apply(progress: Progress) -> None:
        from stackctl.config import validate_text

        text = config_text(ctx)
        config, problems = validate_text(text, str(path), ctx.platform)
        if problems or config is None:  # a bug in the template; never write a bad file
            raise RuntimeError("the generated config is invalid: " + "; ".join(problems))
        atomic_write(path, text)
        ctx.config.source = path
        progress.note(f"wrote {path}; edit it and run `stackctl up` to change the stack")

    return Step(
        description=f"Write the config file {path}",
        check=path.exists,
        apply=apply,
        files=[f"{path} (0644)"],
    )
