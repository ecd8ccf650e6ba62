#!/usr/bin/env bash
# A first `stackctl up` (fake Ollama, the real Open WebUI install and start, fresh home and
# caches) timed next to a bare `pip install open-webui` in the same run, with the ratio; then
# again with a model-download stand-in (a fake /api/pull streaming the model's bytes at a
# fixed rate for PULL_SECONDS), which shows the download overlapping the install.
#
# Usage: bash bench/first_up.sh WORK_DIR [PULL_SECONDS]    (root, systemd installed; from
#        the checkout with stackctl and its test extras installed: pip install -e '.[test]')
# WORK_DIR needs ~15 GB and should not be under /tmp; the bench empties what it made there.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:?usage: bash bench/first_up.sh WORK_DIR [PULL_SECONDS]}"
pull_seconds="${2:-60}"
python="${PYTHON:-python3}"
exec "$python" bench/first_up.py --work "$work" --pull-seconds "$pull_seconds"
