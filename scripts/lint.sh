#!/usr/bin/env bash
# Lint and type-check the library code (arpo_env/ envs/ agents/ benchmarks/ trainers/); scripts/test.sh runs it.
# ruff reads [tool.ruff] and mypy [tool.mypy] in pyproject.toml. mypy does not follow setuptools' editable
# import hook, so it checks a shadow tree of symlinks laid out as the installed namespace (arpo_env/envs ->
# envs/, ...); its messages are mapped back to repository paths.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LIB=(arpo_env envs agents benchmarks trainers)
python3 -m ruff check "${LIB[@]}" bench scripts
SHADOW=$(mktemp -d)
trap 'rm -rf "$SHADOW"' EXIT
mkdir "$SHADOW/arpo_env"
for f in arpo_env/*.py; do ln -s "$ROOT/$f" "$SHADOW/arpo_env/"; done
for p in envs agents benchmarks trainers; do ln -s "$ROOT/$p" "$SHADOW/arpo_env/$p"; done
status=0
(cd "$SHADOW" && python3 -m mypy --config-file "$ROOT/pyproject.toml" -p arpo_env) > "$SHADOW/mypy.out" 2>&1 || status=$?
sed -E 's#^arpo_env/(envs|agents|benchmarks|trainers)/#\1/#' "$SHADOW/mypy.out"
exit $status
