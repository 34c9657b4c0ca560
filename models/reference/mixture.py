"""The clean-manifold fit of the reference: PCA by SVD, then a diagonal-covariance Gaussian mixture
by EM. One implementation for the test manifolds (make_test_manifold) and the training tools that
need NRQ's density (usq_tools.train.quality); `usq fit-nrq` has its own, in Rust."""
import numpy as np

from . import logsumexp


def pca(z, d):
    """(mean, components [d, D]) of the rows of z."""
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    comps = vt[:d]
    # sign convention (as sklearn's svd_flip): largest-magnitude loading positive, so refits are stable
    comps *= np.sign(comps[np.arange(d), np.abs(comps).argmax(axis=1)])[:, None]
    return mean, comps


def diag_gmm(x, k, seed, iters, reg):
    """(weights, means, variances) of a diagonal-covariance EM fit of the rows of x, initialised
    from k distinct random rows; variances floored by reg."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    means = x[rng.choice(n, k, replace=False)].copy()
    cov = np.tile(x.var(axis=0) + reg, (k, 1))
    w = np.full(k, 1.0 / k)
    for _ in range(iters):
        logp = np.log(w) - 0.5 * ((((x[:, None] - means[None]) ** 2) / cov[None]).sum(-1)
                                  + np.log(cov).sum(-1) + d * np.log(2 * np.pi))
        resp = np.exp(logp - logsumexp(logp, axis=1)[:, None])
        nk = resp.sum(axis=0) + 1e-10
        w = nk / n
        means = resp.T @ x / nk[:, None]
        cov = resp.T @ x ** 2 / nk[:, None] - means ** 2 + reg
    return w, means, cov
