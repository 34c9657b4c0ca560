"""HC18 fetal-head frames (van den Heuvel et al., PLoS ONE 2018, doi:10.5281/zenodo.1322001,
CC BY 4.0), read from ../shared/data/hc18 at run time and never copied: file names, the split by
subject (000-599 training, 600-699 held out for models/REPORT.md), frame picking and reading.
"""
import os
import re

import cv2
import numpy as np

from ..paths import SHARED_DATA

IMAGES = os.path.join(SHARED_DATA, "hc18", "images")                # default --hc18 / --src
DATA = os.environ.get("USQ_HC18_ROOT", os.path.join(SHARED_DATA, "hc18"))   # images/ and masks/
NAME = re.compile(r"^(\d{3})_(\d*)HC\.png$")                       # the HC18 PNGs: 000_HC.png, 000_2HC.png
ANY_FRAME = re.compile(r"^(\d{3})_.*\.(png|webp|jpg)$", re.I)      # also the WebP cache's frames
TRAIN_SUBJECTS = range(0, 600)
HELDOUT_SUBJECTS = range(600, 700)
FIT_BELOW = 500  # selection on training subjects: 000-499 fit the manifold and segmenter, 500-599 validate


def subject_frames(folder, subjects, name=NAME):
    """The sorted file names in folder that match name and whose subject (3 digits) is in subjects."""
    return sorted(f for f in os.listdir(folder) if name.match(f) and int(name.match(f).group(1)) in subjects)


def frames(split):
    """The HC18 PNGs of the training (000-599) or held-out (600-699) subjects, names only."""
    return subject_frames(os.path.join(DATA, "images"), TRAIN_SUBJECTS if split == "train" else HELDOUT_SUBJECTS)


def pick_frames(fs, n, rng):
    """One frame per subject (its first file name) for n subjects of fs drawn with rng."""
    by_subject = {}
    for f in fs:
        by_subject.setdefault(NAME.match(f).group(1), []).append(f)
    subjects = sorted(by_subject)
    chosen = sorted(rng.choice(len(subjects), size=n, replace=False))
    return [sorted(by_subject[subjects[i]])[0] for i in chosen]


def pick_eval(split, n, rng):
    return pick_frames(frames(split), n, rng)


def validation_split(n, seed):
    """Training frames of subjects below FIT_BELOW (for fitting), and one frame each of n subjects
    of FIT_BELOW-599 drawn with the seed (for validating)."""
    train = frames("train")
    below = lambda f: int(NAME.match(f).group(1)) < FIT_BELOW
    return ([f for f in train if below(f)],
            pick_frames([f for f in train if not below(f)], n, np.random.default_rng(seed)))


def read_gray(path):
    """8-bit gray [H,W] uint8; Pillow where OpenCV cannot decode (an OpenCV build without WebP)."""
    g = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if g is None:
        from PIL import Image
        g = np.asarray(Image.open(path).convert("L"))
    return g
