"""The wheel carries everything: built, installed into a fresh venv, run outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_wheel_installs_and_runs_from_a_fresh_venv(tmp_path: Path) -> None:
    # --no-isolation: hatchling comes from the test extra, so no download is needed.
    run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "dist"),
            str(ROOT),
        ]
    )
    (wheel,) = (tmp_path / "dist").glob("stackctl-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    # The wheel's dependencies (click, pyyaml, ...) without a download: the site directories
    # of the environment running this test, appended after the venv's own by a .pth file, so
    # stackctl itself still comes from the wheel. (--system-site-packages would lend only the
    # base interpreter's, which lack them when the tests run from a venv, as the README says.)
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    site_dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    Path(purelib.stdout.strip(), "test-dependencies.pth").write_text("\n".join(site_dirs) + "\n")

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STACKCTL_")},
        "STACKCTL_HOME": str(home),
        "STACKCTL_AS_ROOT": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    where = run(
        [
            str(python),
            "-c",
            "import json, stackctl, stackctl.paths as p; print(json.dumps([stackctl.__file__, str(p.templates_dir())]))",
        ],
        cwd=outside,
        env=env,
    )
    module, templates = json.loads(where.stdout)
    assert module.startswith(str(venv)) and templates.startswith(str(venv))
    assert Path(templates, "stack.yaml.tmpl").is_file()

    helped = run([str(venv / "bin" / "stackctl"), "--help"], cwd=outside, env=env)
    assert "Your own local LLM stack in one command" in helped.stdout
    # config init reads the template and the model catalogue, both from inside the wheel.
    init = run([str(venv / "bin" / "stackctl"), "config", "init"], cwd=outside, env=env)
    written = Path(init.stdout.split(": backend")[0].removeprefix("wrote "))
    assert written.is_file() and str(written).startswith(str(home))
    assert 'models: ["gemma3:' in written.read_text()
    validated = run([str(venv / "bin" / "stackctl"), "config", "validate"], cwd=outside, env=env)
    assert validated.stdout == f"{written}: ok\n"
