#!/usr/bin/env bash
# Create (or reuse) tools/reference/.venv with the pinned oracle packages from PyPI.
#   tools/reference/setup.sh            # idempotent: an existing venv with the pins is left alone
# Where the wheels come from is pip's business: its own environment variables (PIP_INDEX_URL,
# PIP_EXTRA_INDEX_URL, e.g. an index of CPU-only torch wheels for a smaller download) apply.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating $venv" >&2
  "$py" -m venv "$venv"
fi
# Already satisfied? `pip install` would say so too, but this avoids touching the network at all.
if "$venv/bin/python" - "$here/requirements.txt" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    got = version(name).split("+")[0]
    if got != want:
        sys.exit(1)
PY
  echo "$venv already has the pinned packages" >&2
  exit 0
fi
"$venv/bin/python" -m pip install --upgrade pip >&2
"$venv/bin/python" -m pip install -r "$here/requirements.txt"
echo "ok: $venv" >&2
