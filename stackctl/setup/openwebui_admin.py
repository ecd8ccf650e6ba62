"""Open WebUI's first admin, created headless, and how people log in.

Open WebUI makes the first account that signs up its admin. On a stack reachable from the
network (`expose: true`) that would be whoever gets there first, so stackctl creates the
admin itself: Open WebUI reads WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD (secrets.env) and,
when its database has no user yet, creates that admin during startup, before its port
listens (open-webui 0.12.4: open_webui/main.py lifespan -> utils/auth.py create_admin_user).
With `openwebui.admin_email` set the same happens on a loopback-only stack too.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import socket
import sqlite3
from pathlib import Path

from stackctl.config.model import Config
from stackctl.paths import Paths
from stackctl.secret_names import WEBUI_ADMIN_EMAIL, WEBUI_ADMIN_PASSWORD


def headless_admin(config: Config) -> bool:
    """Whether stackctl creates Open WebUI's first admin (else the first sign-up is)."""
    return bool(config.openwebui.enabled and (config.openwebui.admin_email or config.expose))


def generated_admin_email(hostname: str | None = None) -> str:
    """An email for the admin when `openwebui.admin_email` is not set: admin@<host>.local
    (Open WebUI wants name@domain.tld: utils/misc.py validate_email_format)."""
    host = (hostname if hostname is not None else socket.gethostname()).lower()
    label = re.sub(r"[^a-z0-9-]+", "-", host.split(".")[0]).strip("-") or "stackctl"
    return f"admin@{label}.local"


def show_password_command(paths: Paths) -> str:
    """The command that prints the admin's password (root's file for a system stack)."""
    argv = ["grep", WEBUI_ADMIN_PASSWORD, str(paths.secrets_file)]
    return ("sudo " if paths.scope == "system" else "") + shlex.join(argv)


def existing_admins(database: Path) -> list[str]:
    """The admins' emails in Open WebUI's database (its `user` table: open_webui/models/
    users.py), read-only; empty when there is none or it cannot be read."""
    if not database.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT email FROM user WHERE role = 'admin'").fetchall()
    except sqlite3.Error:
        return []
    return [str(row[0]).lower() for row in rows]


def login_lines(config: Config, paths: Paths, stored: dict[str, str]) -> list[str]:
    """How to log in to Open WebUI and how to add people, for `up`'s summary."""
    if not headless_admin(config):
        return ["    the first account you create becomes its admin"]
    email = stored.get(WEBUI_ADMIN_EMAIL) or config.openwebui.admin_email
    admins = existing_admins(paths.openwebui_data / "webui.db")
    if admins and email.lower() not in admins:
        lines = [  # Open WebUI creates the admin only on a database without users
            "    Open WebUI already had accounts, so it made no new admin: log in as its "
            f"admin ({', '.join(admins)})",
        ]
    else:
        lines = [
            f"    log in as {email}; the password is {WEBUI_ADMIN_PASSWORD} in "
            f"{paths.secrets_file} (`{show_password_command(paths)}`)",
        ]
    if config.expose:
        lines.append("    sign-up is off: add people in Admin Panel > Users > Add User (+)")
    return lines
