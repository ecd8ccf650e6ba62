"""Steps every platform shares: the service account (system scope), directories, linger,
and the secrets, generated once into files of mode 0600."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

from stackctl import keystore, proc
from stackctl import secrets as sec
from stackctl.errors import StackctlError
from stackctl.homebrew import invoking_user
from stackctl.paths import SERVICE_ACCOUNT
from stackctl.plan import Progress, Step, command_step
from stackctl.probe import models_dir, read_linger
from stackctl.registry import info
from stackctl.setup.context import Context
from stackctl.setup.openwebui_admin import generated_admin_email, headless_admin

NOLOGIN = "/usr/sbin/nologin"
MACOS_GROUP = "staff"  # every account a person logs in with on a Mac is in it


def require_private_inline_keys(ctx: Context) -> None:
    """An exposed stack takes inline proxy.api_keys only from a stack.yaml others cannot read
    (the proxy refuses them at start otherwise: better to say so before anything changes)."""
    if ctx.config.expose and ctx.config.proxy.enabled:
        sec.proxy_api_keys(ctx.config.proxy, ctx.config.source, exposed=True)


# --- ports --------------------------------------------------------------------------------


def require_free_ports(ctx: Context) -> None:
    """Stop before changing anything when another program holds a port of the stack (the
    service would crash-loop on "address already in use"). Our own running services are
    fine, and so is another Ollama a step of this plan stops."""
    for service in ctx.services:
        holder = ctx.facts.ports.get(service.port)
        if holder is None or holder.ours:
            continue
        if service.name == "ollama" and ctx.ollama_conflicts:
            continue  # Ollama.app or brew's service: stopped by a step of the plan
        who = f"{holder.name} (pid {holder.pid})" if holder.pid else "another user's process"
        key = f"{info(service.name).section}.port"  # the front's is tls.port
        raise StackctlError(
            f"port {service.port} ({service.name}) is taken by {who}: stop it, or give "
            f"{key} another port in {ctx.config_path}, then run `stackctl up` again"
        )


# --- the service manager (Linux) ------------------------------------------------------------


def user_manager_socket() -> Path:
    """Where a running systemd user manager listens (`systemctl --user` talks to it there)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Path(runtime) / "systemd/private"


def require_service_manager(ctx: Context) -> None:
    """Stop before installing anything when no systemd can run the services: system scope
    needs systemd as PID 1; user scope a user manager (one that runs, or one a systemd PID 1
    starts at login or with linger)."""
    if ctx.facts.init_system != "none":
        return
    if ctx.scope == "user" and user_manager_socket().exists():
        return
    raise StackctlError(
        "no service manager: this Linux was not booted with systemd (no /run/systemd/system), "
        "so nothing would run the stack's services: run stackctl on a host booted with "
        "systemd (a container needs systemd as its PID 1; on WSL set systemd=true in "
        "/etc/wsl.conf)"
    )


# --- the dedicated account (Linux, system scope) ------------------------------------------


def require_python_for_the_account(python: Path, stdlib: Path) -> None:
    """The proxy runs as the service account with the interpreter stackctl runs under; stop
    early when that account cannot run it. Checked: the path the unit names (a venv's
    bin/python), every path its symlinks lead through to the real interpreter (a venv's python
    links to the one it was made from, e.g. pyenv's under /root, mode 0700), and the standard
    library that interpreter loads (from sys.base_prefix). Otherwise systemd fails the unit
    with 203/EXEC, or Python with "No module named 'encodings'"."""
    links = _links(python)
    checked = [(p, f"{python} (a link to {p})") for p in links[1:]]
    checked += [(stdlib, f"{python} (with its standard library in {stdlib})")]
    for path, shown in [(links[0], str(python)), *checked]:
        closed = _closed_to_others(path)
        if closed is None:
            continue
        raise StackctlError(
            f"the proxy service runs {shown} as the '{SERVICE_ACCOUNT}' account, which cannot "
            f"enter {closed}: install stackctl with a Python every account can read, e.g. "
            "Debian's: `sudo /usr/bin/python3 -m venv /opt/stackctl && sudo "
            "/opt/stackctl/bin/pip install stackctl`, then run `sudo /opt/stackctl/bin/stackctl up`"
        )


def _links(path: Path) -> list[Path]:
    """path, then each path its chain of symlinks leads to, then the fully resolved file."""
    chain = [Path(os.path.abspath(path))]
    while chain[-1].is_symlink() and len(chain) < 40:  # 40: the kernel's own limit
        target = chain[-1].parent / os.readlink(chain[-1])
        chain.append(Path(os.path.normpath(target)))
    resolved = path.resolve()
    return chain if resolved in chain else [*chain, resolved]


def _closed_to_others(path: Path) -> Path | None:
    """The first directory on the way to path (or path itself) that other accounts cannot
    enter (no o+x), or None."""
    for step in [*reversed(path.parents), path]:
        if step.exists() and not step.stat().st_mode & 0o001:
            return step
    return None


def account_ids(name: str = SERVICE_ACCOUNT) -> tuple[int, int] | None:
    """(uid, gid) of an account from `getent passwd`, or None when there is none."""
    entry = proc.output(["getent", "passwd", name])
    if not entry:
        return None
    fields = entry.splitlines()[0].split(":")
    return (int(fields[2]), int(fields[3])) if len(fields) > 3 else None


def account_step(ctx: Context) -> Step:
    """Create the system account the services run as (like Ollama's installer does)."""
    argv = [
        "useradd", "--system", "--user-group", "--home-dir", str(ctx.paths.data_dir),
        "--shell", NOLOGIN, SERVICE_ACCOUNT,
    ]  # fmt: skip
    return command_step(
        description=f"Create the system account '{SERVICE_ACCOUNT}' the services run as",
        check=lambda: account_ids() is not None,
        argv=argv,
    )


# --- directories --------------------------------------------------------------------------


def _directories(ctx: Context) -> dict[Path, int]:
    """The directories the stack needs, with their modes (Open WebUI's holds people's chats)."""
    paths = ctx.paths
    wanted = {paths.data_dir: 0o755, paths.log_dir: 0o755}
    if ctx.config.openwebui.enabled:
        wanted[paths.openwebui_data] = 0o700
    if ctx.backend == "vllm" or ctx.scope == "system":
        # where the backend keeps models, which HF_HOME or OLLAMA_MODELS may move to another
        # disk: a system unit may write only there (ReadWritePaths=, which systemd refuses to
        # set up for a missing directory), as the service account
        wanted[models_dir(ctx.config, paths, ctx.backend)] = 0o755
    return wanted


def directories_step(ctx: Context) -> Step:
    """Create the data, log and model directories (kept by `down`, removed by `--purge`)."""
    wanted = _directories(ctx)

    def apply(progress: Progress) -> None:
        for path, mode in wanted.items():
            path.mkdir(parents=True, exist_ok=True, mode=mode)

    return Step(
        description="Create stackctl's data and log directories",
        check=lambda: all(p.is_dir() for p in wanted),
        apply=apply,
        commands=[f"mkdir -p -m {mode:o} {p}" for p, mode in wanted.items()],
    )


def service_owner(ctx: Context) -> tuple[str, str]:
    """(user, group) the system-scope services run as: the dedicated account on Linux; on
    macOS the account that ran sudo, in the group `staff` every Mac user belongs to."""
    if ctx.platform == "macos":
        return invoking_user() or "", MACOS_GROUP
    return SERVICE_ACCOUNT, SERVICE_ACCOUNT


def _owner_ids(user: str, group: str) -> tuple[int, int] | None:
    """(uid, gid) of the owner, or None when the account does not exist (yet)."""
    if user == SERVICE_ACCOUNT:
        return account_ids(user)  # created by this run's account step: ask getent afresh
    import grp
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def _owned_paths(ctx: Context) -> tuple[list[Path], list[Path]]:
    """(trees, single paths) the services' account must own: where the services write."""
    trees = [p for p in _directories(ctx) if p not in (ctx.paths.data_dir,)]
    # Linux: the data dir is the account's home (vLLM and Open WebUI keep caches under
    # $HOME); a Mac account keeps its own home.
    single = [ctx.paths.data_dir] if ctx.platform == "linux" else []
    return trees, single


def _key_files(ctx: Context) -> list[Path]:
    """The proxy's key files, which it reads as the services' account; either may not exist
    (Open WebUI's key is a named one, and named keys may never be added)."""
    keys_file = ctx.config.proxy.api_keys_file
    if not keys_file:
        return []
    return [Path(keys_file).expanduser(), keystore.store_path(keys_file)]


def ownership_step(ctx: Context) -> Step:
    """Give the services' account the directories its services write (system scope).

    On macOS root creates them but the LaunchDaemons run as the person who ran sudo: launchd
    opens StandardOutPath as the job's user before it starts the program (a log it cannot
    open makes the job exit with 78, EX_CONFIG), Open WebUI opens its database in its 0700
    DATA_DIR, Ollama writes models, and an exposed proxy reads its 0600 key file."""
    trees, single = _owned_paths(ctx)
    keys = _key_files(ctx)
    user, group = service_owner(ctx)
    owner = f"{user}:{group}"

    def commands(existing_only: bool) -> list[list[str]]:
        keep = (lambda p: p.exists()) if existing_only else (lambda p: True)
        argvs = [["chown", "-R", owner, *(str(p) for p in trees if keep(p))]]
        argvs.append(["chown", owner, *(str(p) for p in [*single, *keys] if keep(p))])
        return [argv for argv in argvs if argv[-1] != owner]  # nothing to chown: no command

    def owned(path: Path, ids: tuple[int, int]) -> bool:
        return (path.stat().st_uid, path.stat().st_gid) == ids

    def check() -> bool:
        ids = _owner_ids(user, group)
        if ids is None:
            return False
        if not all(path.exists() and owned(path, ids) for path in [*trees, *single]):
            return False
        return all(owned(path, ids) for path in keys if path.exists())

    def apply(progress: Progress) -> None:
        for argv in commands(existing_only=True):
            proc.run(argv)

    return Step(
        description=f"Let '{user}' own the directories its services write",
        check=check,
        apply=apply,
        commands=[shlex.join(argv) for argv in commands(existing_only=False)],
    )


# --- linger (Linux, user scope) -----------------------------------------------------------


def linger_step(ctx: Context) -> Step:
    """Keep user services running after logout (and start them at boot) on a headless box."""
    user = ctx.facts.user
    argv = ["loginctl", "enable-linger", user]
    return command_step(
        description=f"Keep {user}'s services running after logout (systemd linger)",
        check=lambda: read_linger(user) is True,
        argv=argv,
        fix=f"ask an administrator to run `sudo {shlex.join(argv)}`",
    )


# --- secrets ------------------------------------------------------------------------------


def _wanted_secrets(ctx: Context) -> dict[str, str | Callable[[], str] | None]:
    """Secret name -> the value it must have (None: any, a new token once when missing; a
    function: any, its value once when missing)."""
    config = ctx.config
    wanted: dict[str, str | Callable[[], str] | None] = {}
    if config.openwebui.enabled:
        wanted[sec.WEBUI_SECRET_KEY] = None
        if config.proxy.enabled and not _named_openwebui_key(ctx):
            # Open WebUI talks to the proxy with the proxy's first key when it has keys
            wanted[sec.OPENWEBUI_PROXY_KEY] = ctx.stack.first_proxy_key
        if headless_admin(config):
            wanted[sec.WEBUI_ADMIN_EMAIL] = config.openwebui.admin_email or generated_admin_email
            wanted[sec.WEBUI_ADMIN_PASSWORD] = None
    token = os.environ.get(sec.HF_TOKEN, "").strip()
    if ctx.backend == "vllm" and token:
        wanted[sec.HF_TOKEN] = token  # given for this run: keep it for the service
    cluster = ctx.config.cluster
    if cluster is not None:
        # the head makes the cluster's token once; a worker keeps the one it joined with
        wanted[sec.RAY_AUTH_TOKEN] = ctx.options.token if ctx.options.join else None
    return wanted


def _secret_changes(ctx: Context, stored: dict[str, str]) -> dict[str, str]:
    """What secrets.env must be given: a new token for each missing secret, the wanted value
    for each that differs. Empty when every secret is in place."""
    changes: dict[str, str] = {}
    for name, value in _wanted_secrets(ctx).items():
        if value is None and not stored.get(name):
            changes[name] = sec.new_token()
        elif callable(value):
            if not stored.get(name):
                changes[name] = value()
        elif value is not None and stored.get(name) != value:
            changes[name] = value
    return changes


def _named_openwebui_key(ctx: Context) -> bool:
    """Open WebUI gets a named key of its own (keystore.OPENWEBUI_KEY: its digest in the key
    store, its value in secrets.env) when the proxy keeps keys in files and has no unnamed
    key for it to use (a stack from before named keys keeps using its first key)."""
    config = ctx.config
    return bool(
        config.openwebui.enabled
        and config.proxy.enabled
        and config.proxy.api_keys_file
        and not ctx.stack.proxy_api_keys
    )


def _needs_openwebui_key(ctx: Context) -> bool:
    """Open WebUI has no key the store accepts: none yet, or it was revoked (rotation)."""
    return _named_openwebui_key(ctx) and ctx.stack.openwebui_named_key is None


def _needs_proxy_key_file(ctx: Context) -> bool:
    """Without Open WebUI, stackctl's own checks need a key they can read: an unnamed one."""
    config = ctx.config
    proxy = config.proxy
    return bool(
        proxy.enabled
        and proxy.api_keys_file
        and not config.openwebui.enabled
        and not sec.proxy_api_keys(proxy)
    )


# The secrets a service reads at start (its unit's EnvironmentFile): when one that it had
# changes, the running service must restart to take it (units_step does).
READ_AT_START = {sec.OPENWEBUI_PROXY_KEY: "openwebui", sec.HF_TOKEN: "vllm"}


def _restarting_secrets(ctx: Context) -> list[tuple[str, str]]:
    """(secret, service) for each secret read at start that the secrets step will change
    (the service had one)."""
    stored = sec.read_env_file(ctx.paths.secrets_file)
    changing = set(_secret_changes(ctx, stored))
    if _needs_openwebui_key(ctx):
        changing.add(sec.OPENWEBUI_PROXY_KEY)
    return [(n, svc) for n, svc in READ_AT_START.items() if n in changing and stored.get(n)]


def services_with_new_secrets(ctx: Context) -> list[str]:
    """The services whose secret read at start the secrets step will change: known when the
    plan is made, so the units step is planned to restart them."""
    return [service for _, service in _restarting_secrets(ctx)]


def secrets_step(ctx: Context, stale: list[str] | None = None) -> Step:
    """Generate each missing secret once; never replace one that exists (a new Open WebUI
    key would log everyone out). A service whose secret changed (Open WebUI's key for the
    proxy, after it was revoked; a new HF_TOKEN) is added to `stale`, for the units step to
    restart."""
    path = ctx.paths.secrets_file
    keys_file = ctx.config.proxy.api_keys_file
    files = [f"{path} (0600)"]
    if _needs_proxy_key_file(ctx):
        files.append(f"{Path(keys_file).expanduser()} (0600)")
    if _needs_openwebui_key(ctx):
        files.append(f"{keystore.store_path(keys_file)} (0600)")

    def check() -> bool:
        if _needs_proxy_key_file(ctx) or _needs_openwebui_key(ctx):
            return False
        return not _secret_changes(ctx, sec.read_env_file(path))

    def apply(progress: Progress) -> None:
        changing = _restarting_secrets(ctx)  # asked before anything is written
        if _needs_proxy_key_file(ctx):
            sec.ensure_proxy_key(ctx.config.proxy)
            progress.note(f"API key for apps written to {keys_file}")
        if _needs_openwebui_key(ctx):
            _give_openwebui_a_key(ctx, progress)
        changes = _secret_changes(ctx, sec.read_env_file(path))
        if changes:
            sec.write_env_file(path, changes)  # other lines of the file are kept as they are
            progress.note(f"secrets kept in {path} (mode 0600)")
        for name, service in changing:
            if stale is not None:
                if service not in stale:  # the plan may have known it already
                    stale.append(service)
                progress.note(f"{service} restarts with its new {name} once its unit is in place")

    return Step(
        description="Generate the stack's secrets (once) into files only you can read",
        check=check,
        apply=apply,
        files=files,
    )


def _give_openwebui_a_key(ctx: Context, progress: Progress) -> None:
    """Make (or replace) the named key `openwebui` and hand its value to Open WebUI."""
    keys_file = ctx.config.proxy.api_keys_file
    secrets_file = ctx.paths.secrets_file
    key, _ = keystore.add_key(
        keystore.store_path(keys_file),
        keystore.OPENWEBUI_KEY,
        replace=True,
        owner_of=Path(keys_file).expanduser(),
    )
    sec.write_env_file(secrets_file, {sec.OPENWEBUI_PROXY_KEY: key})
    progress.note(f"Open WebUI's key for the proxy: the named key '{keystore.OPENWEBUI_KEY}'")


def stored_hf_token(ctx: Context) -> str | None:
    """HF_TOKEN for downloads: this run's environment, else the one kept in secrets.env."""
    try:
        return sec.hf_token(ctx.paths.secrets_file, os.environ)
    except StackctlError:
        return None
