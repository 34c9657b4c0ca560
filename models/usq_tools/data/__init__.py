"""Data: the HC18 frames (hc18) and their local WebP cache (prepare_hc18_cache), the POCUS lung
frames (pocus_lung), and `link`, which makes `usq fit-nrq` organ folders of either. The B-mode
simulator is usq_reference.simulate_bmode: the reference's test manifold needs it too, and the
reference does not import usq_tools."""
import os


def link(paths, folder):
    """Links to paths in folder (a `usq fit-nrq` organ folder), keeping links already there;
    returns the folder. Standard library only: models/fit_default_manifold.sh runs it without the venv."""
    os.makedirs(folder, exist_ok=True)
    for p in paths:
        dst = os.path.join(folder, os.path.basename(p))
        if not os.path.lexists(dst):
            os.symlink(os.path.realpath(p), dst)
    return folder
