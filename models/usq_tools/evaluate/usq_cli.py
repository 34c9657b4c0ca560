"""Scores through the usq binary (target/release/usq): `usq score --json`, `usq compare --json`,
and `usq fit-nrq` roots made of links to HC18 frames."""
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ..data import link
from ..data.hc18 import DATA
from ..paths import USQ
from .distortions import reference_pairs


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}...: exit {r.returncode}: {r.stderr[-2000:]}")
    return r.stdout


def link_fit_root(root, fs):
    """A `usq fit-nrq` root: root/FetalHead/ with a link to each of the HC18 frames fs."""
    link([os.path.join(DATA, "images", f) for f in fs], os.path.join(root, "FetalHead"))
    return root


def usq_score(paths, model, manifold, max_patches, workers, patches=None, organ=None):
    """NRQ of every path (against one organ's manifold when organ is given, else all of the
    folder's); with a dict as `patches`, also each path's scored patches into it, as
    [x, y, loglik] (x, y: the patch's corner in the frame)."""
    chunks = [paths[i::workers] for i in range(workers)]

    def one(chunk):
        cmd = [USQ, "score", *chunk, "--json", "--model", model, "--manifold", manifold]
        if max_patches:
            cmd += ["--max-patches", str(max_patches)]
        if organ:
            cmd += ["--organ", organ]
        return [json.loads(l) for l in run(cmd).splitlines() if l.strip()]

    out = {}
    with ThreadPoolExecutor(workers) as ex:
        for recs in ex.map(one, chunks):
            for r in recs:
                out[r["path"]] = r["nrq"]
                if patches is not None:
                    patches[r["path"]] = [[q["x"], q["y"], q["loglik"]] for q in r["patches"]]
    missing = [p for p in paths if p not in out]
    assert not missing, f"usq score gave no result for {missing[:3]}"
    return out


def compare_records(pairs, model, workers, weights=None):
    """{image path: the `usq compare --json` object} of every (reference, image) pair; with the
    weighted uLPIPS (`--weights FILE`) when weights is given."""
    extra = ["--weights", weights] if weights else []

    def one(pair):
        return pair[1], json.loads(run([USQ, "compare", pair[0], pair[1], "--json", "--model", model, *extra]))

    with ThreadPoolExecutor(workers) as ex:
        return dict(ex.map(one, pairs))


def usq_compare(pairs, model, workers):
    return {p: r["ulpips"] for p, r in compare_records(pairs, model, workers).items()}


def ulpips_weighted_scores(items, model, weights, workers):
    """ulpips_scores and the weighted uLPIPS (`usq compare --weights FILE`) of every item, in one
    pass: (reference by path, weighted by path)."""
    recs = compare_records(reference_pairs(items), model, workers, weights)
    ref, wtd = {p: r["ulpips"] for p, r in recs.items()}, {p: r["ulpips_weighted"] for p, r in recs.items()}
    for _, fam, _, p in items:
        if fam == "clean":
            ref[p] = wtd[p] = 0.0
    return ref, wtd


def ulpips_scores(items, model, workers):
    """uLPIPS of every item against its clean frame; the clean frames themselves 0, since identical
    frames give exactly 0 (checked by the project's tests)."""
    ulp = usq_compare(reference_pairs(items), model, workers)
    ulp.update({p: 0.0 for _, fam, _, p in items if fam == "clean"})
    return ulp
