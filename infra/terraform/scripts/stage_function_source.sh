#!/usr/bin/env bash
# Stage the Cloud Functions source: the one directory every function is built from.
#
#   build/function-source/
#     main.py            functions/main.py (the entry points)
#     requirements.txt   functions/requirements.txt (what the Cloud Functions build installs)
#     shared/            the shared package, importable because it sits beside main.py
#
# Terraform zips this directory (archive_file) and uploads it as functions/{sha256}.zip, so the
# functions redeploy exactly when these files change. Usage (from anywhere):
#   infra/terraform/scripts/stage_function_source.sh [OUTPUT_DIR]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
out="${1:-$repo/build/function-source}"

rm -rf "$out"
mkdir -p "$out"
cp "$repo/functions/main.py" "$repo/functions/requirements.txt" "$out/"
# Everything in the package (modules and any data files) but bytecode caches, which would
# change the archive's hash without changing the code.
(cd "$repo" && find shared -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 |
  xargs -0 -I{} cp --parents {} "$out/")
echo "staged $(find "$out" -type f | wc -l) files in $out"
