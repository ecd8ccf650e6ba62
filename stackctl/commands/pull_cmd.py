"""`stackctl pull MODEL...`: download models into the stack's Ollama, with progress."""

from __future__ import annotations

import click

from stackctl.cli import AppContext, pass_app
from stackctl.pull import DEFAULT_RETRIES, DEFAULT_STALL_SECONDS, STALL_ENV

# `up` pulls too: both read the option and STACKCTL_PULL_STALL_TIMEOUT the same way
stall_timeout_option = click.option(
    "--stall-timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_STALL_SECONDS,
    show_default=True,
    envvar=STALL_ENV,
    help="Seconds without progress before a model download is asked for again (it resumes).",
)


@click.command(name="pull")
@click.argument("model_names", metavar="MODEL...", nargs=-1, required=True)
@stall_timeout_option
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=DEFAULT_RETRIES,
    show_default=True,
    help="Stalls in a row (without new bytes) before giving up.",
)
@pass_app
def pull(app: AppContext, model_names: tuple[str, ...], stall_timeout: float, retries: int) -> None:
    """Pull models into Ollama with a progress bar (bytes, rate, ETA).

    A stalled download is retried and resumes where it stopped; so does running the same
    command again after Ctrl-C.

    \b
    Examples:
      stackctl pull gemma3:12b
      stackctl pull llama3.2 qwen3:8b
    """
    from stackctl.errors import StackctlError
    from stackctl.pull import installed_models, pull_with_bar

    stack = app.stack()
    config = stack.config
    if stack.backend == "vllm":
        raise StackctlError(
            "this stack serves models with vLLM, one model per server: set vllm.model (a "
            f"Hugging Face id) and vllm.served_model_name in {app.config_path}, then run "
            "`stackctl up` (it downloads the model)"
        )
    base_url = config.ollama.url
    if installed_models(base_url, timeout=3.0) is None:
        raise StackctlError(
            f"Ollama does not answer at {base_url}: `stackctl status` shows why; "
            "`stackctl up` starts the stack"
        )
    for model in model_names:
        pull_with_bar(base_url, model, stall_seconds=stall_timeout, retries=retries)
