"""The fake Open WebUI's accounts are as strict as open-webui 0.12.4's (see the fake's
docstring): the headless admin from WEBUI_ADMIN_EMAIL/PASSWORD, signup refused with 403
once a user exists and ENABLE_SIGNUP is false, the first signup made admin, signin."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.installer import FakeBin
from tests.ports import free_ports

ACCESS_PROHIBITED = (
    "You do not have permission to access this resource. Please contact your administrator "
    "for assistance."
)
INVALID_CRED = (
    "The email or password provided is incorrect. Please check for typos and try logging in again."
)

INVALID_EMAIL_FORMAT = (
    "The email format you entered is invalid. Please double-check and make sure you're using "
    "a valid email address (e.g., yourname@example.com)."
)


@pytest.fixture
def webui(fake_bin: FakeBin, tmp_path: Path) -> Iterator:
    """start(**env) runs `open-webui serve` on a free port and returns its base URL."""
    started: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        [port] = free_ports(1)
        environ = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "HF_HOME": str(tmp_path)}
        process = subprocess.Popen(
            [str(fake_bin.bin / "open-webui"), "serve", "--port", str(port), "--host", "127.0.0.1"],
            env={**environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                return url
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the fake never listened"
                time.sleep(0.05)

    yield start
    for process in started:
        process.terminate()
        process.wait(5)


def signup(url: str, email: str, password: str = "pw-123456") -> httpx.Response:
    body = {"name": "Mallory", "email": email, "password": password}
    return httpx.post(url + "/api/v1/auths/signup", json=body)


def signin(url: str, email: str, password: str) -> httpx.Response:
    return httpx.post(url + "/api/v1/auths/signin", json={"email": email, "password": password})


def test_the_headless_admin_exists_before_the_port_listens_and_signup_is_refused(webui) -> None:
    url = webui(
        WEBUI_ADMIN_EMAIL="Admin@Box.local",
        WEBUI_ADMIN_PASSWORD="s3cret-s3cret",
        ENABLE_SIGNUP="false",
        ENABLE_PERSISTENT_CONFIG="false",
    )
    refused = signup(url, "mallory@example.com")
    assert (refused.status_code, refused.json()) == (403, {"detail": ACCESS_PROHIBITED})
    session = signin(url, "admin@box.local", "s3cret-s3cret")
    assert session.status_code == 200
    assert (session.json()["role"], session.json()["token_type"]) == ("admin", "Bearer")
    wrong = signin(url, "admin@box.local", "guess")
    assert (wrong.status_code, wrong.json()) == (400, {"detail": INVALID_CRED})
    assert httpx.post(url + "/api/v1/auths/signin", content=b"{").status_code == 422


def test_without_an_admin_the_first_signup_wins_whatever_enable_signup_says(webui) -> None:
    # routers/auths.py: "Don't gate the first admin on ENABLE_SIGNUP"
    url = webui(ENABLE_SIGNUP="false", ENABLE_PERSISTENT_CONFIG="false")
    first = signup(url, "first@example.com")
    assert (first.status_code, first.json()["role"]) == (200, "admin")
    second = signup(url, "second@example.com")
    assert (second.status_code, second.json()) == (403, {"detail": ACCESS_PROHIBITED})


def test_a_stored_setting_beats_the_environment_unless_persistence_is_off(webui) -> None:
    url = webui(ENABLE_SIGNUP="true")  # persistent config on: Open WebUI's default
    assert signup(url, "first@example.com").json()["role"] == "admin"
    # the first admin turned signup off in the database, which wins at the next start
    url = webui(ENABLE_SIGNUP="true")
    assert signup(url, "second@example.com").status_code == 403
    # with ENABLE_PERSISTENT_CONFIG=false (what stackctl sets) the environment wins
    url = webui(ENABLE_SIGNUP="true", ENABLE_PERSISTENT_CONFIG="false")
    second = signup(url, "second@example.com")
    assert (second.status_code, second.json()["role"]) == (200, "pending")
    bad = signup(url, "not-an-email")
    assert (bad.status_code, bad.json()["detail"]) == (400, INVALID_EMAIL_FORMAT)
