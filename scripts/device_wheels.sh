#!/usr/bin/env bash
# Downloads, into .whl/ (git-ignored), the wheels that scripts/gpu_check_device.sh
# installs on the NVIDIA device machine, which has no network and a Python 3.12 with
# torch, grpcio, protobuf, msgpack, nvidia-ml-py, numpy, packaging, setuptools and
# wheel but not the rest of what the check imports. Each is pinned to the version in
# this repository's .venv (pip freeze), so the device runs what the tests here ran.
#
#   .whl/        pyzmq; gymnasium with cloudpickle and farama-notifications (the
#                registry checks env ids with it); sqlite-utils with its dependencies
#                (the registry's migrations). Always installed there.
#   .whl/floor/  grpcio, protobuf, msgpack: every service refuses to start on versions
#                older than runtime/versions.py's minimums, so the device script installs
#                one of these only where the device's own is older.
#
# Not needed: supervisor (the check starts the services itself), the gateway's
# grpcio-tools/-health-checking/-reflection (the check does not use the gateway, and
# trainer_api/v1/*_pb2.py are committed, so installing the project builds nothing).
#
# Usage: scripts/device_wheels.sh   (needs PyPI; about 10 MiB; then carry ".whl")
set -euo pipefail
cd "$(dirname "$0")/.."

NEEDED="pyzmq gymnasium cloudpickle farama-notifications sqlite-utils sqlite-fts4
click-default-group click pluggy python-dateutil tabulate"
FLOOR="grpcio protobuf msgpack"
PIP=(.venv/bin/python -m pip)

test -x .venv/bin/python || { echo "no .venv: run 'make install' first" >&2; exit 2; }
FROZEN=$("${PIP[@]}" freeze | tr 'A-Z_' 'a-z-')

pinned() {  # NAME -> NAME==VERSION as installed in .venv
    local line
    line=$(grep -E "^$1==" <<<"$FROZEN") || { echo "$1 is not installed in .venv" >&2; exit 2; }
    echo "$line"
}

download() {  # DEST SPEC: a CPython 3.12 x86-64 Linux wheel, or a pure-Python one
    "${PIP[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$1" "$2"
}

rm -rf .whl
mkdir -p .whl/floor
for name in $NEEDED; do download .whl "$(pinned "$name")"; done
for name in $FLOOR; do download .whl/floor "$(pinned "$name")"; done
ls -1 .whl .whl/floor
du -sh .whl
