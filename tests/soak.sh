#!/usr/bin/env bash
# The live engine fed at 30 fps for a long run, twice: ffi/firmware_loop.c against the static
# libusq, then `usq live --input`, both on the shipped defaults and the same clip.
#
#   tests/soak.sh SECONDS [FRAMES_DIR]
#
# FRAMES_DIR: default held-out HC18 subjects 600-629 from ../shared/data (looped), else the
# project's simulated frames. Every $EVERY seconds (default 60) it records resident memory,
# results so far and the engine's p50/p99 latency (over its last 1024 results), and for
# firmware_loop the allocation pool's bytes in use, peak and fallbacks. Prints the table, then
# fails when, once warm (the second quarter of the run against the last), memory grows by more
# than $SLACK_MIB MiB (default 16), the pool's peak or in-use bytes grow by more than 1 MiB, the
# median cost of one encoder run (the engine's run_ms, read every second) rises by more than
# $DRIFT_PCT % + 1 ms (default 60: on this shared 2-vCPU host the minute medians of an idle
# 30-minute run ranged 12.6-19.3 ms, up to 1.53x, with no drift), an interval has no results,
# or a frame failed / the pool fell back to malloc. The frame latency is printed, not judged:
# the budget plans one run a frame or two as the runs' cost and jitter allow, so on a fast
# host its p50 moves between about one run and two by design. CI runs it
# for 2 minutes; docs/reliability.md has the 30-minute run.
#
# PARTS picks which of the two to run (default "firmware_loop live").
#
# Needs target/release/usq and target/release/deps/libusq_ffi.{a,so}, as `cargo test --release`
# (or `cargo build --release --workspace`) leaves them, a C compiler, pkg-config and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 SECONDS [FRAMES_DIR]" >&2; exit 2; }
total=$1 EVERY=${EVERY:-60} SLACK_MIB=${SLACK_MIB:-16} FPS=${FPS:-30} DRIFT_PCT=${DRIFT_PCT:-60}
USQ=${USQ:-target/release/usq} PARTS=${PARTS:-firmware_loop live}
# deps/: cargo test builds the C library there and does not always copy it up (ffi/tests).
LIBDIR=${USQ_LIBDIR:-target/release/deps}
source .ci/apt-ensure.sh
apt_ensure soak gcc libc6-dev pkg-config curl
[ -x "$USQ" ] && [ -f "$LIBDIR/libusq_ffi.a" ] || {
  echo "soak: needs $USQ and $LIBDIR/libusq_ffi.a: cargo test --release (or cargo build --release --workspace)" >&2; exit 1; }
# The last tick can fall after the clip ends: ask for 5 intervals to get 4 samples.
[ "$total" -ge $((5 * EVERY)) ] || { echo "soak: SECONDS must cover at least 5 intervals of $EVERY s" >&2; exit 2; }
source tests/soak-common.sh
frames=$(soak_frames "${2:-}")

# judge NAME TABLE: the table's columns are t rss_mib scored p50 p99 failed pool_in_use pool_peak
# fallbacks run_ms ('-' where a column does not apply).
judge() {
  echo "soak: $1, one row per ${EVERY} s:"
  awk '{ printf "soak:  "; for (i = 1; i <= NF; i++) printf " %15s", $i; print "" }' "$2"
  [ "$(($(wc -l <"$2") - 1))" -ge 4 ] || { echo "soak: FAIL: $1: fewer than 4 samples" >&2; return 1; }
  awk -v name="$1" -v slack="$SLACK_MIB" -v drift="$DRIFT_PCT" '
    NR == 1 { next }
    { n++; t[n] = $1; rss[n] = $2; scored[n] = $3; p50[n] = $4; failed[n] = $6; inuse[n] = $7; peak[n] = $8; fb[n] = $9; run[n] = $10 }
    function maxof(a, lo, hi,   m, i) { m = a[lo]; for (i = lo; i <= hi; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
    function median(a, lo, hi,   v, k, i, j, x) {
      k = 0; for (i = lo; i <= hi; i++) v[++k] = a[i] + 0
      for (i = 2; i <= k; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
    }
    END {
      q = int(n / 4); if (q < 1) q = 1
      lo2 = q + 1; hi2 = 2 * q; lo4 = n - q + 1
      bad = 0
      r2 = maxof(rss, lo2, hi2); r4 = maxof(rss, lo4, n)
      printf "soak: %s: rss second-quarter peak %d MiB, last-quarter peak %d MiB\n", name, r2, r4
      if (r4 > r2 + slack) { printf "soak: FAIL: %s: memory grew by %d MiB once warm\n", name, r4 - r2; bad = 1 }
      printf "soak: %s: median p50 latency %.2f ms (second quarter), %.2f ms (last quarter)\n", name, median(p50, lo2, hi2), median(p50, lo4, n)
      m2 = median(run, lo2, hi2); m4 = median(run, lo4, n)
      printf "soak: %s: median encoder run %.2f ms (second quarter), %.2f ms (last quarter)\n", name, m2, m4
      if (m4 > (1 + drift / 100) * m2 + 1) { printf "soak: FAIL: %s: the encoder run got slower\n", name; bad = 1 }
      for (i = 2; i <= n; i++) if (scored[i] <= scored[i - 1]) { printf "soak: FAIL: %s: no results between %s s and %s s\n", name, t[i - 1], t[i]; bad = 1 }
      if (failed[n] != "-" && failed[n] > 0) { printf "soak: FAIL: %s: %d frames failed\n", name, failed[n]; bad = 1 }
      if (peak[n] != "-") {
        printf "soak: %s: pool in use %.1f / %.1f MiB, peak %.1f / %.1f MiB (second / last quarter), fallbacks %d\n", name, maxof(inuse, lo2, hi2), maxof(inuse, lo4, n), maxof(peak, lo2, hi2), peak[n], fb[n]
        if (peak[n] > maxof(peak, lo2, hi2) + 1 || maxof(inuse, lo4, n) > maxof(inuse, lo2, hi2) + 1) { printf "soak: FAIL: %s: the pool grew once warm\n", name; bad = 1 }
        if (fb[n] > 0) { printf "soak: FAIL: %s: %d allocations fell back to malloc\n", name, fb[n]; bad = 1 }
      }
      exit bad
    }' "$2"
}

# median_of FILE: the median of the numbers in FILE, one a line.
median_of() { sort -g "$1" | awk '{ v[NR] = $1 } END { printf "%.2f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

header="t_s rss_mib scored p50_ms p99_ms failed pool_in_use_mib pool_peak_mib pool_fallbacks run_ms"

fw_ok=0 live_ok=0
# 1. firmware_loop against the static library, as firmware links it (pkg-config usq-static).
if [[ " $PARTS " == *" firmware_loop "* ]]; then
bash ffi/install.sh "$work/prefix" "$LIBDIR" >/dev/null
# shellcheck disable=SC2046
cc -std=c11 -O2 -pthread -o "$work/firmware_loop" ffi/firmware_loop.c \
  $(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs usq-static) -lm
echo "soak: firmware_loop (static libusq) at $FPS fps for $total s on $frames"
"$work/firmware_loop" "$frames" --frames $((FPS * total)) --fps "$FPS" --stats-every 1 \
  >"$work/fw.out" 2>"$work/fw.err" &
fw=$!; pids+=("$fw")
echo "$header" >"$work/fw.table"
# firmware_loop prints a tick every second: each tick's run_ms goes into the interval's median,
# and the tick that closes an interval of $EVERY s makes its row, memory read as it appears.
seen=0 next_row=$EVERY
: >"$work/fw.runs"
field() { echo "$tick" | grep -o " $1=[^ ]*" | cut -d= -f2; }
while kill -0 "$fw" 2>/dev/null; do
  sleep 1
  # The ticks not seen yet, from one read of the output (it grows by 30 result lines a second).
  grep '^tick ' "$work/fw.out" | tail -n +$((seen + 1)) >"$work/fw.new" || true
  while IFS= read -r tick; do
    seen=$((seen + 1))
    field run_ms >>"$work/fw.runs"
    [ "$(field t_s | cut -d. -f1)" -ge "$next_row" ] || continue
    next_row=$((next_row + EVERY))
    m=$(rss "$fw")
    # A tick printed just before firmware_loop ended has no memory to read: left out.
    [ "$m" -ge 0 ] || continue
    echo "$tick" | awk -v m="$m" -v run="$(median_of "$work/fw.runs")" '{
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print v["t_s"], m, v["scored"], v["p50_ms"], v["p99_ms"], v["failed"], v["pool_in_use_mb"], v["pool_peak_mb"], v["pool_fallbacks"], run
    }' >>"$work/fw.table"
    : >"$work/fw.runs"
  done <"$work/fw.new"
done
wait "$fw" || { tail -20 "$work/fw.err" "$work/fw.out" >&2; echo "soak: FAIL: firmware_loop exited with an error" >&2; exit 1; }
grep '^stats ' "$work/fw.out" | sed 's/^/soak: firmware_loop /'
judge firmware_loop "$work/fw.table" || fw_ok=1
fi

# 2. usq live --input, its counters from the live view's /stats.json.
if [[ " $PARTS " == *" live "* ]]; then
echo "soak: usq live --input at $FPS fps for $total s"
"$USQ" live --input "$frames" --fps "$FPS" --seconds "$((total + 15))" --json --serve 127.0.0.1:0 \
  >"$work/live.out" 2>"$work/live.err" &
usq=$!; pids+=("$usq")
for _ in $(seq 150); do grep -q "serving the live view on" "$work/live.err" && break; sleep 0.2; done
url=$(grep -o 'http://[0-9.:]*/' "$work/live.err" | head -1)
[ -n "$url" ] || { cat "$work/live.err" >&2; echo "soak: FAIL: usq did not start" >&2; exit 1; }
echo "$header" >"$work/live.table"
get() { echo "$json" | grep -o "\"$1\":[0-9.eE+-]*" | cut -d: -f2; }
t=0 start=$SECONDS
while [ "$t" -lt "$total" ]; do
  # run_ms read every second, its median per interval (one reading is a moving average of the
  # last few runs, as noisy as they are). Intervals end by the clock: a count of one-second
  # sleeps drifts by the reads' own time (30 s over half an hour, past usq's end).
  t=$((t + EVERY))
  : >"$work/live.runs"
  while [ $((SECONDS - start)) -lt "$t" ]; do
    sleep 1
    json=$(curl -s --max-time 5 "${url}stats.json") || continue
    get run_ms >>"$work/live.runs"
  done
  kill -0 "$usq" 2>/dev/null || { tail -20 "$work/live.err" >&2; echo "soak: FAIL: usq ended early" >&2; exit 1; }
  m=$(rss "$usq")
  json=$(curl -s --max-time 5 "${url}stats.json")
  printf '%s %s %s %.2f %.2f %s - - - %.2f\n' "$t" "$m" "$(get frames_scored)" "$(get latency_p50_ms)" "$(get latency_p99_ms)" \
    "$(get frames_failed)" "$(median_of "$work/live.runs")" >>"$work/live.table"
done
wait "$usq" || { tail -20 "$work/live.err" >&2; echo "soak: FAIL: usq live exited with an error" >&2; exit 1; }
grep -v '^usq live: serving' "$work/live.err" | tail -3 | sed 's/^/soak: usq live /'
results=$(grep -c '"frame_id"' "$work/live.out" || true)
echo "soak: usq live: $results JSON results on stdout"
judge "usq live" "$work/live.table" || live_ok=1
fi

[ "$fw_ok" -eq 0 ] && [ "$live_ok" -eq 0 ] || { echo "soak: FAIL" >&2; exit 1; }
echo "soak: PASS"
