"""Write a compact copy of the HC18 *training* frames (subjects 000-599) for machines that do not
have ../shared/data (e.g. a lent GPU machine that only receives the work tree).

    models/.venv/bin/python -m usq_tools.data.prepare_hc18_cache [--src ../shared/data/hc18/images] [--out models/.hc18cache]

Frames keep their native size (800x540) and are re-encoded as WebP quality 95 (~28 MB for the
741 training frames instead of ~97 MB of PNG; RMS error ~0.6 gray levels, far below the speckle).
The folder is for local use only: it is listed in .git/info/exclude and never committed (HC18 is
CC BY 4.0 data that the project does not redistribute). usq_tools.train.mim --hc18 reads it like the PNGs.
"""
import argparse
import os

import cv2

from ..paths import MODELS
from .hc18 import ANY_FRAME, IMAGES, TRAIN_SUBJECTS, subject_frames   # 600-699 are held out for evaluation


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=IMAGES)
    ap.add_argument("--out", default=os.path.join(MODELS, ".hc18cache"))
    ap.add_argument("--quality", type=int, default=95)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    n = total = 0
    for f in subject_frames(a.src, TRAIN_SUBJECTS, ANY_FRAME):
        g = cv2.imread(os.path.join(a.src, f), cv2.IMREAD_GRAYSCALE)
        dst = os.path.join(a.out, os.path.splitext(f)[0] + ".webp")
        ok, buf = cv2.imencode(".webp", g, [cv2.IMWRITE_WEBP_QUALITY, a.quality])
        assert ok, f
        with open(dst, "wb") as fh:
            fh.write(buf.tobytes())
        n, total = n + 1, total + len(buf)
    print(f"wrote {n} frames to {a.out}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
