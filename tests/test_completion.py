"""`stackctl completion bash|zsh|fish`: click's own completion scripts, and real bash using
the bash one to complete commands and service names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent  # the test environment's `stackctl` script lives here
assert (BIN / "stackctl").exists(), "install stackctl into the test environment (README)"


def bash_completes(words: list[str], script: str) -> list[str]:
    """What bash offers after sourcing `script`, for the words typed so far."""
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_stackctl_completion stackctl\n"  # as bash calls it: the command's name first
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


def test_bash_completes_commands_and_service_names(stackctl) -> None:
    script = stackctl("completion", "bash").out
    assert "_STACKCTL_COMPLETE=bash_complete" in script
    assert bash_completes(["stackctl", "sta"], script) == ["start", "status"]
    assert bash_completes(["stackctl", "restart", "o"], script) == ["ollama", "openwebui"]
    assert bash_completes(["stackctl", "logs", "p"], script) == ["proxy"]


def test_zsh_and_fish_scripts_come_from_click(stackctl) -> None:
    zsh = stackctl("completion", "zsh")
    assert zsh.code == 0 and "#compdef stackctl" in zsh.out
    assert "_STACKCTL_COMPLETE=zsh_complete" in zsh.out
    fish = stackctl("completion", "fish")
    assert fish.code == 0 and "complete --no-files --command stackctl" in fish.out
    assert stackctl("completion", "tcsh").code == 2
