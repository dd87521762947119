#!/usr/bin/env bash
# Regenerates docs/images/{modal,approval,thread}.png from the playground, driven in Debian's Chromium by the
# full-change browser test. Run it after changing a view. Needs `bash scripts/test.sh` once (venv, Chromium);
# emoji need a colour emoji font (Debian: fonts-noto-color-emoji), installed here when apt-get is available.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! fc-list 2>/dev/null | grep -qi "color emoji" && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq fonts-noto-color-emoji >/dev/null
fi
ECSBOT_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest -q tests/playground/test_flows.py -k full_change
ls -l docs/images/modal.png docs/images/approval.png docs/images/thread.png
