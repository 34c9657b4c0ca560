# Sourced by the soak scripts (tests/soak.sh, tests/browser_soak.sh): a work folder and the
# processes they start, all gone on exit, and the clip they play.

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# soak_frames [DIR]: prints DIR if given, else a folder of held-out HC18 subjects 600-629
# (never used for fitting) copied from ../shared/data, else of the project's simulated frames.
soak_frames() {
  if [ -n "${1:-}" ]; then echo "$1"; return; fi
  mkdir -p "$work/frames"
  if [ -d ../shared/data/hc18/images ]; then
    cp ../shared/data/hc18/images/6[0-2][0-9]_HC.png "$work/frames"/
  else
    echo "SKIPPED real frames: ../shared/data/hc18 is absent, using the simulated frames" >&2
    cp tests/fixtures/sim_linear_640x480*.png "$work/frames"/
  fi
  echo "$work/frames"
}

# rss PID: the process's resident memory in MiB, or -1 once it is gone.
rss() { awk '/^VmRSS/{print int($2/1024)}' "/proc/$1/status" 2>/dev/null || echo -1; }
