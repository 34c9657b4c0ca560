"""Plot the side-by-side benchmark runs of usq_tools.bench.compare.

    models/.venv/bin/python -m usq_tools.bench.plot RUN.json [RUN.json ...] --out docs/benchmarks.png

One panel per measurement (encoder forward, whole-frame NRQ); bars for usq/tract and
onnxruntime (for NRQ: the Python reference) per model and thread count, p50 with a p99 whisker
where there is one.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(paths):
    out = []
    for path in paths:
        run = json.load(open(path))
        threads = run["config"]["threads"]
        for r in run["results"]:
            model = os.path.basename(r["model"]).replace(".onnx", "")
            u, o, p = r["usq"], r["onnxruntime_forward"], r["python_reference_nrq"]
            out.append((f"{model}\n{threads} thr", u["forward"], o, u["nrq_frame"], p))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="docs/benchmarks.png")
    a = ap.parse_args()
    data = rows(a.runs)
    labels = [d[0] for d in data]
    x = range(len(data))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (tract_i, ort_i, title, ort_name) in zip(
        axes,
        [(1, 2, "encoder forward, batch 1 (ms)", "onnxruntime"), (3, 4, "whole-frame NRQ, 28 patches (ms)", "Python reference (onnxruntime)")],
    ):
        w = 0.38
        for off, idx, name, colour in [(-w / 2, tract_i, "usq / tract", "#2a6f97"), (w / 2, ort_i, ort_name, "#c9733a")]:
            p50 = [d[idx]["p50_ms"] for d in data]
            p99 = [d[idx]["p99_ms"] for d in data]
            err = [[0] * len(data), [max(0.0, b - a) for a, b in zip(p50, p99)]]
            ax.bar([i + off for i in x], p50, w, yerr=err, capsize=3, label=name, color=colour)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("usq bench vs onnxruntime, same models, same machine, one run (p50 bars, p99 whiskers)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
