"""doctor's look at the proxy's keys: the files it reads them from, and whether any is left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stackctl import keystore
from stackctl.doctor.base import Context, Finding
from stackctl.errors import StackctlError


def check_keys(ctx: Context) -> Iterator[Finding]:
    """The key file and the named keys' store can be read and only by their owner, and the
    proxy has a key left (once keys are configured, a proxy without one refuses everyone)."""
    proxy = ctx.config.proxy
    if not proxy.enabled or not proxy.api_keys_file:
        return
    files = [Path(proxy.api_keys_file).expanduser(), keystore.store_path(proxy.api_keys_file)]
    if not any(path.exists() for path in files):
        return  # before the first `up`, which writes them
    try:
        keys = keystore.accepted_keys(proxy)
    except keystore.UnreadableKeyStore as exc:
        yield Finding("warn", "keys", f"not checked: {exc.format_message()}")
        return
    except PermissionError as exc:
        yield Finding(
            "warn", "keys", f"not checked: {exc.filename} cannot be read by you",
            "run `stackctl doctor` as its owner (e.g. with sudo for the system stack)",
        )  # fmt: skip
        return
    except StackctlError as exc:  # readable by others, not a store: the message says the fix
        yield Finding("error", "keys", exc.format_message())
        return
    if not keys:
        yield Finding(
            "error",
            "keys",
            "the proxy has no key left, so it refuses every request",
            "add one with `stackctl keys add NAME`; `stackctl up` gives Open WebUI its own",
        )
        return
    names = ", ".join(record.name for record in keys)
    yield Finding(
        "ok", "keys", f"the proxy takes {len(keys)} key{'s' if len(keys) != 1 else ''}: {names}"
    )
