"""Plot a usq_tools.train.mim loss log: models/train_loss.csv -> models/train_loss.png.

    models/.venv/bin/python -m usq_tools.train.plot_loss [CSV] [--out PNG]
"""
import argparse
import csv
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..paths import MODELS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="?", default=os.path.join(MODELS, "train_loss.csv"))
    ap.add_argument("--out", default=os.path.join(MODELS, "train_loss.png"))
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.csv)))
    step = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, lab in (("loss", "total"), ("mse", "masked-patch pixel MSE"), ("fft", "FFT-amplitude L1")):
        ax[0].plot(step, [float(r[k]) for r in rows], lw=0.8, label=lab)
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("loss (mean over each logging window)")
    ax[0].set_title("TinyUSFM MIM training (train_mim.py)")   # the former script's name, as in the shipped PNG
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    ax[1].plot(step, [float(r["lr"]) for r in rows], color="k", lw=0.8)
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("learning rate")
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print("wrote", a.out, "final:", rows[-1])


if __name__ == "__main__":
    main()
