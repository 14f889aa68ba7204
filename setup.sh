#!/usr/bin/env bash
# One-command set-up for facesr on a fresh machine, then the demo or the test suite.
#
#   bash setup.sh demo   # venv + install + detector models + example clip, then `facesr video` on it
#   bash setup.sh test   # the same set-up, then the test suite
#
# Environment: PYTHON (default python3), VENV (default .venv), TORCH_SPEC (default torch==2.13.0,
# installed first so pip never pulls CUDA packages onto a CPU machine).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PIP_FLAGS=(--quiet --disable-pip-version-check)

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating virtual environment $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    echo "== installing $TORCH_SPEC, then facesr and its dependencies"
    "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import facesr, torch, cv2, mediapipe, av" || { echo "set-up failed: facesr does not import" >&2; exit 1; }
    echo "== detector models"
    "$VENV/bin/facesr" fetch-models
    echo "== example clip"
    "$VENV/bin/python" examples/build_demo_clip.py examples/demo_call.mp4 --reference examples/demo_call_reference.mp4
}

case "${1:-}" in
    demo)
        setup
        mkdir -p out
        "$VENV/bin/facesr" video examples/demo_call.mp4 out/demo_call_facesr.mp4
        "$VENV/bin/facesr" video examples/demo_call.mp4 out/demo_call_side_by_side.mp4 --side-by-side --quiet
        echo
        echo "Done. Input (320x180): examples/demo_call.mp4"
        echo "      facesr x4 (1280x720): out/demo_call_facesr.mp4"
        echo "      bicubic | facesr:     out/demo_call_side_by_side.mp4"
        ;;
    test)
        setup
        shift
        "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: bash setup.sh demo|test [pytest args]" >&2
        exit 2
        ;;
esac
