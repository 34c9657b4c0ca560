"""POCUS lung frames (Born et al., Applied Sciences 2021, github jannisborn/covid19_ultrasound;
47 CC BY 4.0 videos and stills, credited per source in ../shared/data/pocus-lung/manifest.csv),
read at run time and never copied, and their split by source video.

Frames of one video are near-duplicates, so the split is by `source_file`: each source goes to
training, validation or held-out by a hash of its name (stable across machines and Python
versions, independent of the manifest's order), 60 / 20 / 20. Every label (regular, COVID-19,
pneumonia) is kept: NRQ's manifold describes how acquisitions of an organ look, and a
pathological lung is a clean acquisition, not a poor one.

    python -m usq_tools.data.pocus_lung --split train --link DIR/Lung   # a `usq fit-nrq` folder
"""
import argparse
import csv
import hashlib
import os

from . import link
from ..paths import SHARED_DATA

ROOT = os.environ.get("USQ_POCUS_LUNG_ROOT", os.path.join(SHARED_DATA, "pocus-lung"))
SPLITS = ("train", "validation", "heldout")


def split_of(source_file):
    """train (60 %), validation (20 %) or heldout (20 %) by the first 8 bytes of sha256(name)."""
    h = int.from_bytes(hashlib.sha256(source_file.encode()).digest()[:8], "big") / 2.0 ** 64
    return "train" if h < 0.6 else "validation" if h < 0.8 else "heldout"


def manifest():
    with open(os.path.join(ROOT, "manifest.csv"), newline="") as f:
        return list(csv.DictReader(f))


def frames_by_source(split):
    """{source file: its frames' absolute paths, sorted} for one split, by source file."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    out = {}
    for r in manifest():
        if split_of(r["source_file"]) == split:
            out.setdefault(r["source_file"], []).append(os.path.join(ROOT, r["file"]))
    return {s: sorted(fs) for s, fs in sorted(out.items())}


def frames(split):
    """Absolute paths of the frames of one split, sorted."""
    return sorted(f for fs in frames_by_source(split).values() for f in fs)


def sources(split):
    """The source files of one split, sorted."""
    return list(frames_by_source(split))


def spread_frames(split, per_source):
    """Up to per_source frames of each source of the split, evenly spread over its frames."""
    out = []
    for fs in frames_by_source(split).values():
        step = max(1, len(fs) // per_source)
        out += fs[::step][:per_source]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=SPLITS, required=True)
    ap.add_argument("--link", metavar="DIR", help="link the split's frames into DIR (else list them)")
    a = ap.parse_args()
    fs = frames(a.split)
    if a.link:
        link(fs, a.link)
        print(f"{len(fs)} frames of {len(sources(a.split))} sources linked into {a.link}")
    else:
        print("\n".join(fs))


if __name__ == "__main__":
    main()
