#!/usr/bin/env bash
# Memory of `usq live --serve` with the page open in headless Chromium, over a long run.
#
#   tests/browser_soak.sh SECONDS [FRAMES_DIR]
#
# Plays FRAMES_DIR (default: held-out HC18 subjects 600-629 from ../shared/data, else the
# project's simulated frames) in a loop at 10 fps on the shipped defaults, with the page
# loaded (it pulls /events, /frame.jpg on every result and /stats.json every second), and
# samples usq's resident memory every $EVERY seconds (default 10). Prints the samples, then
# fails when the last quarter of the run holds more than $SLACK_MIB (default 16) MiB above
# the second quarter's peak: memory must be flat once warm. Everything it starts is stopped
# on exit. Installs chromium like tests/browser.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 SECONDS [FRAMES_DIR]" >&2; exit 2; }
SECONDS_TOTAL=$1 EVERY=${EVERY:-10} SLACK_MIB=${SLACK_MIB:-16}
USQ=${USQ:-target/release/usq}
source .ci/apt-ensure.sh
apt_ensure browser-soak chromium fonts-dejavu-core curl iproute2
[ -x "$USQ" ] || { echo "soak: $USQ not found: cargo build --release" >&2; exit 1; }
source tests/soak-common.sh
frames=$(soak_frames "${2:-}")
"$USQ" live --input "$frames" --fps 10 --seconds "$((SECONDS_TOTAL + 30))" --serve 127.0.0.1:0 \
  >/dev/null 2>"$work/usq.err" &
usq=$!; pids+=("$usq")
for _ in $(seq 100); do grep -q "serving the live view on" "$work/usq.err" && break; sleep 0.2; done
url=$(grep -o 'http://[0-9.:]*/' "$work/usq.err" | head -1)
[ -n "$url" ] || { cat "$work/usq.err" >&2; echo "soak: usq did not serve" >&2; exit 1; }
chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$work/profile" \
  "$url" >/dev/null 2>&1 &
pids+=("$!")
echo "soak: $url open in headless Chromium for ${SECONDS_TOTAL} s, usq pid $usq"
samples=()
t=0
while [ "$t" -lt "$SECONDS_TOTAL" ]; do
  sleep "$EVERY"; t=$((t + EVERY))
  kill -0 "$usq" 2>/dev/null || { cat "$work/usq.err" >&2; echo "soak: usq ended early" >&2; exit 1; }
  m=$(rss "$usq"); samples+=("$m")
  echo "soak: t=${t}s usq rss ${m} MiB"
done
# The page is really attached: its event stream is an open connection to usq.
port=${url##*:}; port=${port%/}
conns=$(ss -Htn state established "( sport = :$port )" | wc -l)
echo "soak: connections from the page to usq at the end: $conns"
[ "$conns" -ge 1 ] || { echo "soak: FAIL: the page was not connected" >&2; exit 1; }
stats=$(curl -s --max-time 5 "${url}stats.json" || true)
echo "soak: engine counters: $stats"
n=${#samples[@]}
q=$(( n / 4 )); [ "$q" -ge 1 ] || q=1
peak2=0; for ((i = q; i < 2 * q && i < n; i++)); do [ "${samples[i]}" -gt "$peak2" ] && peak2=${samples[i]}; done
[ "$peak2" -gt 0 ] || peak2=${samples[0]}
peak4=0; for ((i = n - q; i < n; i++)); do [ "${samples[i]}" -gt "$peak4" ] && peak4=${samples[i]}; done
echo "soak: rss first ${samples[0]} MiB, second-quarter peak ${peak2} MiB, last-quarter peak ${peak4} MiB, last ${samples[n-1]} MiB"
if [ "$peak4" -gt $((peak2 + SLACK_MIB)) ]; then
  echo "soak: FAIL: memory grew by $((peak4 - peak2)) MiB once warm" >&2; exit 1
fi
echo "soak: PASS"
