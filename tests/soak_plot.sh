#!/usr/bin/env bash
# Draws a soak's tables (the output of tests/soak.sh) as an SVG: resident memory and the
# allocation pool's bytes in use (top), p50 and p99 latency (bottom), per sample, for
# firmware_loop and usq live. Plain awk, no plotting library.
#
#   tests/soak_plot.sh SOAK_LOG OUT.svg
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 SOAK_LOG OUT.svg" >&2; exit 2; }
awk '
/^soak: firmware_loop, one row/ { mode = "fw"; next }
/^soak: usq live, one row/ { mode = "live"; next }
/^soak: +t_s/ { next }
mode != "" && /^soak: +[0-9]/ {
  n[mode]++; i = n[mode]; t[mode, i] = $2 / 60; rss[mode, i] = $3; p50[mode, i] = $5; p99[mode, i] = $6
  if (mode == "fw") pool[i] = $8
  if ($2 / 60 > tmax) tmax = $2 / 60
  if ($6 + 0 > lmax) lmax = $6 + 0
  if ($3 + 0 > mmax) mmax = $3 + 0
  next
}
/^soak: [a-z]/ { mode = "" }
function x(v) { return 70 + v / tmax * 620 }
function line(key, arr, lo, hi, top, height, colour, dash,   i, pts) {
  pts = ""
  for (i = 1; i <= n[key]; i++) pts = pts sprintf("%.1f,%.1f ", x(t[key, i]), top + height - (arr[key, i] - lo) / (hi - lo) * height)
  printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" %s points=\"%s\"/>\n", colour, dash, pts
}
function axes(top, height, lo, hi, unit,   k, v, y) {
  printf "<rect x=\"70\" y=\"%d\" width=\"620\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", top, height
  for (k = 0; k <= 4; k++) {
    v = lo + (hi - lo) * k / 4; y = top + height - height * k / 4
    printf "<text x=\"64\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%.0f</text>\n", y + 4, v
  }
  printf "<text x=\"14\" y=\"%d\" font-size=\"12\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">%s</text>\n", top + height / 2, top + height / 2, unit
}
END {
  if (tmax == 0) { print "no soak tables in the log" > "/dev/stderr"; exit 1 }
  mtop = int(mmax / 20 + 1) * 20; ltop = int(lmax / 20 + 1) * 20
  print "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"460\" font-family=\"sans-serif\">"
  print "<rect width=\"720\" height=\"460\" fill=\"white\"/>"
  axes(30, 160, 0, mtop, "MiB"); axes(240, 160, 0, ltop, "ms")
  # Pool bytes in use: one series of its own (the same array name is per mode).
  for (i = 1; i <= n["fw"]; i++) poolk["fw", i] = pool[i]
  line("fw", rss, 0, mtop, 30, 160, "#1f77b4", ""); line("live", rss, 0, mtop, 30, 160, "#d62728", "")
  line("fw", poolk, 0, mtop, 30, 160, "#1f77b4", "stroke-dasharray=\"5,4\"")
  line("fw", p50, 0, ltop, 240, 160, "#1f77b4", ""); line("live", p50, 0, ltop, 240, 160, "#d62728", "")
  line("fw", p99, 0, ltop, 240, 160, "#1f77b4", "stroke-dasharray=\"2,3\""); line("live", p99, 0, ltop, 240, 160, "#d62728", "stroke-dasharray=\"2,3\"")
  print "<text x=\"380\" y=\"20\" text-anchor=\"middle\" font-size=\"13\">resident memory (solid), firmware_loop pool in use (dashed)</text>"
  print "<text x=\"380\" y=\"230\" text-anchor=\"middle\" font-size=\"13\">latency p50 (solid), p99 (dotted), over the last 1024 results</text>"
  for (k = 0; k <= 6; k++) printf "<text x=\"%.1f\" y=\"418\" text-anchor=\"middle\" font-size=\"11\">%.0f</text>\n", x(tmax * k / 6), tmax * k / 6
  print "<text x=\"380\" y=\"436\" text-anchor=\"middle\" font-size=\"12\">minutes</text>"
  print "<text x=\"200\" y=\"454\" font-size=\"12\" fill=\"#1f77b4\">firmware_loop (static libusq)</text>"
  print "<text x=\"420\" y=\"454\" font-size=\"12\" fill=\"#d62728\">usq live --input</text>"
  print "</svg>"
}' "$1" > "$2"
echo "soak plot: $2"
