#!/usr/bin/env bash
# The live view in a real browser: installs Debian's headless Chromium and ChromeDriver (and
# a font, so the page's text renders), then runs the WebDriver test of `usq live --serve`
# (tests/it/browser.rs), which fails here rather than skips.
#
#   tests/browser.sh [SCREENSHOT]
#
# SCREENSHOT: where to save the page's screenshot (default target/browser/usq-live.png);
# USQ_BROWSER_WATCH_S=N takes it N seconds later; USQ_BROWSER_CLIP=DIR and USQ_BROWSER_ORGAN=NAME
# play another clip. README's picture, the held-out POCUS lung videos in order:
#   (cd models && python3 -m usq_tools.data.pocus_lung --split heldout --link /tmp/lung)
#   USQ_BROWSER_CLIP=/tmp/lung USQ_BROWSER_ORGAN=Lung USQ_BROWSER_WATCH_S=40 tests/browser.sh docs/live-view.png
# Reuses the release build of `cargo test --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/apt-ensure.sh
apt_ensure browser-test chromium chromium-driver fonts-dejavu-core
need_files browser-test /usr/bin/chromium /usr/bin/chromedriver
export USQ_BROWSER_REQUIRED=1
[ $# -ge 1 ] && export USQ_BROWSER_SCREENSHOT=$1
timeout 600 cargo test --release --test it -- browser:: --nocapture
