"""`stackctl cluster`: the Ray cluster of several machines (README, "A cluster")."""

from __future__ import annotations

import click

from stackctl.cli import AppContext, pass_app


@click.group(name="cluster")
def cluster() -> None:
    """A cluster of machines: the head runs the model across every node's GPUs.

    \b
    On the head (stack.yaml has cluster: {role: head, nodes: 2}):
      stackctl up
      stackctl cluster join-command     # prints what each worker runs
    On each worker:
      stackctl up --join 10.0.0.5:6379 --token …
    """


@cluster.command(name="join-command")
@pass_app
def cluster_join_command(app: AppContext) -> None:
    """Print the command a worker runs to join this head's cluster.

    It holds the cluster's token (a secret: send it to the worker the way you would send a
    password) and the versions the worker installs to match this head.

    \b
    Example:
      stackctl cluster join-command
    """
    from stackctl.cluster_join import join_command_for

    click.echo(join_command_for(app.stack()))


@cluster.command(name="status")
@click.option("--json", "json_", is_flag=True, help="Print JSON for scripts.")
@pass_app
def cluster_status(app: AppContext, json_: bool) -> None:
    """The cluster's nodes: address, alive or dead, GPUs, what each runs.

    Exit code 0: every node of cluster.nodes is alive; 3: fewer (the missing ones are
    named); 1: this machine is in no cluster (or its Ray cannot be asked).

    \b
    Examples:
      stackctl cluster status
      stackctl cluster status --json | jq '.nodes[] | {name, alive, gpus}'
    """
    from stackctl.cluster_report import cluster_report

    text, data, code = cluster_report(app.stack())
    if json_:
        from stackctl.output import print_json

        print_json(data)
    else:
        click.echo(text)
    click.get_current_context().exit(code)


@cluster.command(name="wait", hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def cluster_wait(app: AppContext, command: tuple[str, ...]) -> None:
    """Wait until every node of cluster.nodes has joined, then run COMMAND in this process
    (the head's vLLM unit starts with it)."""
    from stackctl.cluster_join import wait_then_exec

    wait_then_exec(app.stack(), list(command))
