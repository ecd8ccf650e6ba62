"""macOS steps: Homebrew's Ollama (Metal), and stopping an Ollama that would fight ours.

stackctl runs Ollama from its own LaunchAgent, not `brew services`: brew upgrades overwrite
brew's plist and it sets env vars of its own (Homebrew/homebrew-core `Formula/o/ollama.rb`
`service do`; ollama/ollama issues #1501, #3581, #10724). The
Ollama.app and brew's service both serve on port 11434, so they are stopped (the plan
lists that step, and `up` asks before applying the plan).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from stackctl import homebrew, proc
from stackctl.errors import StackctlError
from stackctl.homebrew import brew_argv
from stackctl.install_commands import HOMEBREW_INSTALL
from stackctl.plan import Progress, Step, command_step
from stackctl.probe_processes import OLLAMA_APP
from stackctl.services.inputs import DEFAULT_BREW_PREFIX
from stackctl.setup.context import Context


def brew_ollama(ctx: Context) -> Path:
    """Where Homebrew links the ollama binary."""
    return Path(ctx.facts.brew_prefix or DEFAULT_BREW_PREFIX, "bin", "ollama")


def require_homebrew(ctx: Context) -> None:
    """Stop with the official install command when there is no Homebrew (we never pipe a
    script into a shell for the user)."""
    if not ctx.facts.brew_prefix:
        raise StackctlError(
            "Homebrew is needed to install Ollama and was not found. Install it with the "
            f"official command (see https://brew.sh):\n  {HOMEBREW_INSTALL}\n"
            "then run `stackctl up` again"
        )


def not_the_formula(binary: Path) -> str | None:
    """What is wrong with an <prefix>/bin/ollama that is not the formula's, and the fix
    (None: missing, or the formula's). The ollama-app cask links it into Ollama.app (its
    `binary` stanza), and the app links /usr/local/bin/ollama, which is Homebrew's bin on an
    Intel Mac: the service would run the app's self-updating binary, and `brew upgrade
    ollama` could not upgrade it."""
    prefix = binary.parent.parent
    if not binary.exists() or homebrew.in_cellar(binary, prefix, "ollama"):
        return None
    target = binary.resolve()
    found = f"{binary} is {target}, not Homebrew's ollama formula. "
    if f"/{OLLAMA_APP}/" in str(target):
        found = (
            f"{binary} is {target}, Ollama.app's own binary, not Homebrew's ollama formula: "
            "the app replaces it when it updates itself, and `brew upgrade` cannot. "
        )
    if homebrew.installed("ollama-app", cask=True):
        return found + (
            "Run `brew uninstall --cask ollama-app` (the ollama formula conflicts with that "
            "cask; models in ~/.ollama stay), then `stackctl up` again: it installs the formula"
        )
    return found + (
        f"Remove that link (`rm {shlex.quote(str(binary))}`; the app asks before linking "
        "it again), then run `stackctl up` again: it installs the formula"
    )


def require_formula_ollama(ctx: Context) -> None:
    """Refuse an <prefix>/bin/ollama that is not the formula's (see not_the_formula)."""
    problem = not_the_formula(brew_ollama(ctx))
    if problem:
        raise StackctlError(problem)


def require_macos_for_ollama(ctx: Context) -> None:
    """Refuse a macOS older than Ollama supports, before anything is installed."""
    from stackctl.mac_limits import UPDATE_MACOS, macos_too_old

    problem = macos_too_old(ctx.facts)
    if problem:
        raise StackctlError(f"{problem}: {UPDATE_MACOS}, then run `stackctl up` again")


def services_home(ctx: Context) -> Path:
    """The home of the account the services run as (who ran sudo, in system scope)."""
    from stackctl.paths import fake_root, home

    user = homebrew.invoking_user() if ctx.scope == "system" else None
    if user is None or fake_root():
        return home()
    import pwd

    try:
        return Path(pwd.getpwnam(user).pw_dir)
    except KeyError:
        return home()


def require_unprotected_paths(ctx: Context) -> None:
    """Refuse paths the services need in ~/Documents, ~/Desktop or ~/Downloads, which macOS
    keeps from background services (see stackctl.mac_limits.PROTECTED_FOLDERS)."""
    import sys

    import stackctl
    from stackctl.mac_limits import ALL_PROTECTED, KEPT_OUT, protected_folder

    where = services_home(ctx)
    install = (
        f"install stackctl outside {ALL_PROTECTED} (e.g. `pipx install` or `uv tool install`, "
        "which use ~/.local)"
    )
    move = f"move it out of {ALL_PROTECTED} (e.g. to {ctx.paths.config_file}, the default)"
    needed = [(f"the config {ctx.config_path}", ctx.config_path, move)]
    if ctx.config.proxy.enabled:
        needed += [
            (f"the proxy service's Python {sys.executable}", Path(sys.executable), install),
            (f"stackctl itself ({Path(stackctl.__file__).parent})",
             Path(stackctl.__file__).parent, install),
        ]  # fmt: skip
    models = ctx.config.ollama.env.get("OLLAMA_MODELS")
    if models:
        fix = f"set OLLAMA_MODELS in ollama.env to a folder outside {ALL_PROTECTED}"
        needed.append((f"Ollama's models ({models})", Path(models).expanduser(), fix))
    for what, path, fix in needed:
        folder = protected_folder(path, where)
        if folder:
            raise StackctlError(
                f"{what} is in {folder}, {KEPT_OUT}: {fix}, then run `stackctl up` again"
            )


def ollama_steps(ctx: Context) -> list[Step]:
    """`brew install ollama` when the formula is missing; `brew upgrade ollama` with
    --upgrade. The service runs the formula's binary, linked from the Cellar."""
    require_macos_for_ollama(ctx)
    require_unprotected_paths(ctx)
    require_homebrew(ctx)
    require_formula_ollama(ctx)
    binary = brew_ollama(ctx)
    install = brew_argv("install", "ollama")
    steps = [
        command_step(
            description="Install Ollama with Homebrew (Metal acceleration on Apple Silicon)",
            check=lambda: binary.exists() and homebrew.installed("ollama"),
            argv=install,
        )
    ]
    if ctx.options.upgrade:
        upgrade = brew_argv("upgrade", "ollama")
        steps.append(
            command_step(
                description="Upgrade Ollama with Homebrew",
                check=lambda: False,
                argv=upgrade,
            )
        )
    return steps


def conflict_steps(ctx: Context) -> list[Step]:
    """One step per other Ollama the probe found running (Ollama.app, its login item, brew
    services). A stop command may be several, joined by `&&`."""
    steps = []
    for conflict in ctx.ollama_conflicts:
        argvs = [shlex.split(part) for part in conflict.stop_command.split(" && ")]

        def apply(progress: Progress, argvs: list[list[str]] = argvs) -> None:
            for argv in argvs:
                proc.run(argv)

        steps.append(
            Step(
                description=f"Stop {conflict.name}: {conflict.detail}",
                check=lambda: False,  # the probe just saw it running
                apply=apply,
                commands=[conflict.stop_command],
            )
        )
    return steps
