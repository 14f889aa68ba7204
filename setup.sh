#!/usr/bin/env bash
# One-command set-up for facesr on a fresh machine, then the demo or the test suite.
#
#   bash setup.sh demo   # venv + install + detector models + example clip, then `facesr video` on it
#   bash setup.sh test   # the same set-up (plus Debian's chromium for the browser test), then the test
#                        # suite, in a private network namespace
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

browser() {
    # Debian's Chromium and ChromeDriver, for the test that drives the stream page in a real browser.
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== Chromium and ChromeDriver (Debian packages) for the browser test"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } \
            || echo "note: could not install chromium: the browser test will skip" >&2
    else
        echo "note: /usr/bin/chromium or chromedriver missing and not root: the browser test will skip" >&2
    fi
}

run_tests() {
    # The suite runs in a private network namespace: loopback only, with 10.213.0.1 on lo (aioice
    # leaves 127.0.0.1 out of its ICE candidates but uses that), so no test packet leaves the machine.
    local browser_ok=0
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && browser_ok=1
    local ns
    for ns in "unshare -n" "unshare -rn"; do
        if $ns true 2>/dev/null && command -v ip >/dev/null; then
            echo "== tests (in a private network namespace: $ns)"
            FACESR_NETNS=1 FACESR_BROWSER=$browser_ok exec $ns sh -c \
                'ip link set lo up && ip addr add 10.213.0.1/32 dev lo && exec "$@"' sh "$VENV/bin/python" -m pytest "$@"
        fi
    done
    echo "note: cannot make a private network namespace (unshare -n): the network tests will skip" >&2
    FACESR_BROWSER=$browser_ok exec "$VENV/bin/python" -m pytest "$@"
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
        browser
        shift
        run_tests "$@"
        ;;
    *)
        echo "usage: bash setup.sh demo|test [pytest args]" >&2
        exit 2
        ;;
esac
