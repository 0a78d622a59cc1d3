#!/usr/bin/env bash
# Fails when a C++ file is not clang-formatted or an include crosses a layer boundary
# (scripts/check_layers.py). Warnings are errors in the build itself.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cc' '*.h')
clang-format --dry-run -Werror $files
echo "lint: $(echo "$files" | wc -l) files clang-formatted"
python3 scripts/check_layers.py
