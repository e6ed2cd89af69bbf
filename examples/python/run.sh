#!/usr/bin/env bash
# Runs the Python example client against a broker:
#   examples/python/run.sh --server localhost:7443 --pki ./tio-dev/dev-pki
# Makes a virtual environment with the pinned grpcio (under target/, reused on later
# runs), generates the tio.v1 stubs from proto/ into target/python-stubs, then runs
# tio_example.py with the arguments given. Needs python3 with its venv module
# (Debian: apt-get install python3 python3-venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/python-venv"
stubs="$target/python-stubs"

if ! command -v python3 >/dev/null 2>&1; then
  echo "run.sh: python3 is not installed (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
  echo "run.sh: preparing a Python environment in $venv" >&2
  python3 -m venv "$venv" || {
    echo "run.sh: python3 cannot make a virtual environment (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi

# The stubs are made anew each run, from the contract as it is now.
rm -rf "$stubs"
mkdir -p "$stubs"
"$venv/bin/python" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$stubs" --grpc_python_out="$stubs" "$root"/proto/tio/v1/*.proto
PYTHONPATH="$stubs" exec "$venv/bin/python" "$here/tio_example.py" "$@"
