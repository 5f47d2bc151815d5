#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py) on the NVIDIA device machine, in one command.
# That machine has no network and no .venv: its python3 (3.12, with torch) gets the
# missing packages from the wheels scripts/device_wheels.sh downloaded into .whl/,
# and this project and tests/workers (the test-gpu-hold worker), all installed with
# --target into /tmp/site. Installing the project builds nothing but the package
# (setuptools, no build isolation): trainer_api/v1/*_pb2.py are committed, so no
# grpcio-tools is needed.
#
# Here, once:  scripts/device_wheels.sh
# Then:        device run, carry [".whl"], timeout_s 420:
#              bash scripts/gpu_check_device.sh
# Extra arguments go to gpu_check.py (e.g. --gib 4, --via libcuda).
# Writes $OUT/gpu_check.log (everything printed), $OUT/gpu_check.json (the report) and
# $OUT/gpu_check_home.tar.gz (service logs and the run's folder). Exit status: the
# check's (0 all passed, 1 a check failed, 3 no GPU), or 2 when the install failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-$(mktemp -d /tmp/gpu-check-out-XXXXXX)}
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
HOME_DIR=${GPU_CHECK_HOME:-/tmp/gpu-check-home}
PIP_INSTALL=("$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps
             --no-compile --no-cache-dir --upgrade --target "$SITE")

main() {
    echo "== $("$PY" --version) at $(command -v "$PY"); $(uname -srm); $(date -u +%FT%TZ)"
    compgen -G ".whl/*.whl" >/dev/null \
        || { echo "no .whl/*.whl: run scripts/device_wheels.sh first and carry .whl"; return 2; }
    "${PIP_INSTALL[@]}" .whl/*.whl || { echo "installing .whl/*.whl failed"; return 2; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    # grpcio, protobuf, msgpack: the device's own, unless older than runtime/versions.py wants
    local old name
    old=$("$PY" -c 'from runtime.versions import MINIMUMS as M, version_problems as p
print(" ".join(d for d in M if p({d: M[d]})))') || { echo "version check failed"; return 2; }
    for name in $old; do
        echo "== $name on this machine is missing or too old: installing .whl/floor/$name"
        "${PIP_INSTALL[@]}" .whl/floor/"$name"-*.whl || { echo "installing $name failed"; return 2; }
    done
    "${PIP_INSTALL[@]}" --no-build-isolation . tests/workers \
        || { echo "installing the project (setuptools, no build isolation) failed"; return 2; }
    "$PY" -c 'import importlib.metadata as m
def v(d):
    try:
        return m.version(d)
    except m.PackageNotFoundError:
        return "missing"
print("== versions:", ", ".join(f"{d} {v(d)}" for d in ("pyzmq", "grpcio", "protobuf",
      "msgpack", "gymnasium", "sqlite-utils", "nvidia-ml-py", "numpy", "torch")))' || true
    echo "== nvidia-smi -L"
    nvidia-smi -L || echo "(nvidia-smi failed or is missing)"
    rm -rf "$HOME_DIR"
    PYTHONUNBUFFERED=1 "$PY" scripts/gpu_check.py --home "$HOME_DIR" \
        --report "$OUT/gpu_check.json" "$@"
    local rc=$?
    if [ -d "$HOME_DIR" ]; then
        tar czf "$OUT/gpu_check_home.tar.gz" -C "$(dirname "$HOME_DIR")" \
            --exclude=sock "$(basename "$HOME_DIR")" || true
    fi
    echo "== gpu_check.py exited $rc; output in $OUT"
    return $rc
}

mkdir -p "$OUT"
main "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
