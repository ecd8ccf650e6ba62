#!/usr/bin/env bash
# CLI startup: wall time of `stackctl --help`, `stackctl config path` and `stackctl status`
# (nothing installed: every check is refused at once) (hyperfine), next to
# a bare `python -c pass` for scale, and the modules `import stackctl.cli` pulls in.
#
# Usage: bash bench/cli_startup.sh [RUNS] [BASE_REV]   (from the checkout, stackctl installed)
# Prints hyperfine's table and the import-time check; exits 1 if a heavy module is imported
# at startup. Everything runs against a throwaway STACKCTL_HOME.
# With BASE_REV (e.g. HEAD~1 or main), it also times `python -m stackctl --help` and
# `python -m stackctl status` of that commit (checked out into a temporary worktree) next to
# this checkout's, in the same hyperfine run, and prints the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-30}"
base_rev="${2:-}"
python="${PYTHON:-python3}"

if ! command -v hyperfine >/dev/null 2>&1; then
  echo "hyperfine not found: installing it (Debian: apt-get install -y hyperfine)" >&2
  apt-get install -y -q hyperfine >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q hyperfine >/dev/null; }
fi

home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
export STACKCTL_HOME="$home"
stackctl="$(command -v stackctl || true)"
[ -n "$stackctl" ] || { echo "stackctl is not installed (pip install -e .)" >&2; exit 2; }

echo "== wall time ($runs runs each, after 3 warm-up runs)"
hyperfine --ignore-failure --warmup 3 --runs "$runs" --shell=none --style basic --export-markdown "$home/startup.md" \
  --command-name "python -c pass" "$python -c pass" \
  --command-name "stackctl --help" "$stackctl --help" \
  --command-name "stackctl config path" "$stackctl config path" \
  --command-name "stackctl status" "$stackctl status"
echo
cat "$home/startup.md"

echo
echo "== modules imported by 'import stackctl.cli' (python -X importtime; cumulative us)"
# Heavy modules must be imported lazily, inside the functions that need them.
heavy='^(httpx|httpcore|starlette|uvicorn|psutil|yaml|anyio|h11|openai|platformdirs|asyncio|ssl|email)$'
# python -X importtime lists the interpreter's own startup (site and its .pth files) first:
# keep only what comes after it, i.e. what `import stackctl.cli` itself pulls in.
"$python" -X importtime -c 'import stackctl.cli' 2>&1 | awk '/\| site$/ { seen = 1; next } seen' >"$home/importtime.txt"
sort -t'|' -k2 -n -r "$home/importtime.txt" | head -8
found="$(awk -F'|' '{ gsub(/ /, "", $3); split($3, part, "."); print part[1] }' "$home/importtime.txt" \
  | sort -u | grep -E "$heavy" || true)"
total="$(awk -F'|' '$3 ~ /^ *stackctl\.cli *$/ { gsub(/ /, "", $2); print $2 }' "$home/importtime.txt")"
echo "import stackctl.cli: ${total:-?} us cumulative"
if [ -n "$found" ]; then
  echo "heavy modules imported at startup: $(echo "$found" | tr '\n' ' ')" >&2
  exit 1
fi
echo "no heavy modules at startup (checked: ${heavy//|/, })"

echo
echo "== modules each command imports (python -X importtime, top-level packages)"
for command in "--help" "config path"; do
  # shellcheck disable=SC2086
  "$python" -X importtime -m stackctl $command 2>&1 >/dev/null | awk '/\| site$/ { seen = 1; next } seen' >"$home/cmd.txt"
  pkgs="$(awk -F'|' '{ gsub(/ /, "", $3); split($3, part, "."); print part[1] }' "$home/cmd.txt" \
    | sort -u | grep -E "$heavy" | tr '\n' ' ' || true)"
  echo "stackctl $command: heavy: ${pkgs:-none}"
done

if [ -n "$base_rev" ]; then
  echo
  echo "== this checkout against $base_rev (python -m stackctl, same interpreter, same run)"
  base="$home/base"
  git worktree add --detach --quiet "$base" "$base_rev"
  trap 'git worktree remove --force "$base" >/dev/null 2>&1; rm -rf "$home"' EXIT
  here="$(pwd)"
  # -m runs the package found first on sys.path: the current directory (cd into each tree)
  hyperfine --ignore-failure --warmup 3 --runs "$runs" --style basic --export-json "$home/compare.json" \
    --command-name "help ($base_rev)" "cd $base && $python -m stackctl --help" \
    --command-name "help (this)" "cd $here && $python -m stackctl --help" \
    --command-name "status ($base_rev)" "cd $base && $python -m stackctl status" \
    --command-name "status (this)" "cd $here && $python -m stackctl status" >/dev/null
  "$python" - "$home/compare.json" "$base_rev" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = sys.argv[2]
for command in ("help", "status"):
    old, new = results[f"{command} ({base})"], results[f"{command} (this)"]
    shown = "--help" if command == "help" else command
    print(f"stackctl {shown:7} {base}: {old['mean'] * 1000:6.1f} ms  this: "
          f"{new['mean'] * 1000:6.1f} ms  ratio this/{base}: {new['mean'] / old['mean']:.2f}")
PY
fi
