"""Score a folder of frames on Dask's distributed scheduler: one usq.Scorer per worker process
(the model is loaded once per process, never per frame), results to Parquet.

    python examples/dask_score.py FOLDER OUT.parquet [--scheduler tcp://host:8786] [--workers 2] [--chunk 64]

Without --scheduler, a LocalCluster of --workers processes (one thread each) runs on this
machine; with it, any Dask cluster whose workers have `usq` installed scores the archive. The
frames are read by the workers, so the folder must be visible to them (a shared file system
or object store mounted at the same path).
"""
import argparse
import os

import pandas as pd

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_scorers = {}


def list_frames(folder):
    """Image files below folder, sorted, hidden files and folders left out (as `usq score`)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, f) for f in sorted(files)
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(out)


def scorer(model, manifold, organ):
    """This process's scorer for these settings, loaded on first use."""
    import usq
    key = (model, manifold, organ)
    if key not in _scorers:
        _scorers[key] = usq.Scorer(model=model, manifold=manifold, organ=organ)
    return _scorers[key]


def score_chunk(paths, model=None, manifold=None, organ=None):
    """One row per frame: path, NRQ, the quality index, the faults; an error is a row too."""
    s = scorer(model, manifold, organ)
    rows = []
    for p in paths:
        try:
            r = s.nrq(p)
            rows.append({"path": p, "nrq": r.nrq, "quality": r.quality, "quality_organ": r.quality_organ,
                         "faults": ",".join(r.faults), "error": None})
        except Exception as e:  # usq.UsqError: the frame is reported, the job goes on
            rows.append({"path": p, "nrq": float("nan"), "quality": None, "quality_organ": None,
                         "faults": "", "error": str(e)})
    return pd.DataFrame(rows, columns=["path", "nrq", "quality", "quality_organ", "faults", "error"])


def score_folder(client, folder, chunk=64, **settings):
    """All frames of folder scored on the client's cluster, in path order."""
    frames = list_frames(folder)
    chunks = [frames[i:i + chunk] for i in range(0, len(frames), chunk)]
    futures = client.map(score_chunk, chunks, **settings, pure=False)
    parts = client.gather(futures)
    if not parts:
        return score_chunk([], **settings).iloc[0:0]
    return pd.concat(parts, ignore_index=True)


def main():
    from dask.distributed import Client, LocalCluster
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("out", help="Parquet file")
    ap.add_argument("--scheduler", help="address of a running Dask scheduler (default: a LocalCluster)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=64, help="frames per task")
    ap.add_argument("--model")
    ap.add_argument("--manifold")
    ap.add_argument("--organ")
    a = ap.parse_args()
    settings = {"model": a.model, "manifold": a.manifold, "organ": a.organ}
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        client = Client(LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True))
    with client:
        df = score_folder(client, a.folder, a.chunk, **settings)
    df.to_parquet(a.out, index=False)
    print(f"{len(df)} frames, {df['error'].notna().sum()} failed -> {a.out}")


if __name__ == "__main__":
    main()
