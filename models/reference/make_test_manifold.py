"""Fit the small committed test manifold set tests/fixtures/manifold/{Phantom,Fetal}.npz.

Features: NRQ patch features z (seeded contract model) of the grid patches of simulated B-mode
images made in memory (not committed). Per organ: PCA (SVD of the centred data) to d dims, then a
diagonal GMM (K=3) fitted by seeded EM. It only has to be a valid, plausible manifold in the
published file format; the two organs use different image sets and dims, and the two spellings
of the dimension key (`dim`, `D`) and both npz writers (plain, compressed).

    models/.venv/bin/python -m usq_reference.make_test_manifold
"""
import os

import numpy as np
import usq_reference as ref
from usq_reference.mixture import diag_gmm, pca
from usq_reference.simulate_bmode import simulate, to_u8

OUT = os.path.join(ref.ROOT, "tests", "fixtures", "manifold")
K, REG, EM_ITERS = 3, 1e-4, 200

# organ -> (dim, dim key, compressed?, images: (width, height, seed, sector))
ORGANS = {
    "Phantom": (24, "dim", False, [(640, 480, 100 + i, False) for i in range(8)]
                + [(448, 336, 110 + i, False) for i in range(4)]),
    "Fetal": (16, "D", True, [(800, 540, 200 + i, True) for i in range(6)]
              + [(600, 420, 210 + i, True) for i in range(4)]),
}


def main():
    enc = ref.Encoder()
    os.makedirs(OUT, exist_ok=True)
    for seed, (organ, (d, dim_key, compressed, images)) in enumerate(ORGANS.items()):
        z = np.concatenate([ref.patch_features(enc, to_u8(simulate(w, h, s, sector=sec)))[1]
                            for w, h, s, sec in images])
        mean, comps = pca(z, d)
        w, means, cov = diag_gmm((z - mean) @ comps.T, K, seed, EM_ITERS, REG)
        m = dict(pca_mean=mean, pca_components=comps, gmm_weights=w, gmm_means=means, gmm_covariances=cov,
                 log_weights=np.log(w), log_det=np.log(cov).sum(axis=1))
        m[dim_key] = np.array(d, np.int64)
        (np.savez_compressed if compressed else np.savez)(os.path.join(OUT, organ + ".npz"), **m)
        ll = ref.loglik(ref.load_manifold(os.path.join(OUT, organ + ".npz")), z)
        print(f"{organ}: {len(z)} patches, d={d}, weights={np.round(w, 3)}, "
              f"train loglik min/median/max = {ll.min():.1f}/{np.median(ll):.1f}/{ll.max():.1f}")


if __name__ == "__main__":
    main()
