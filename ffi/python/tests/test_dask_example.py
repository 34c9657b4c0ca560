"""The distributed example on a LocalCluster of two worker processes: the Parquet it writes
holds, frame for frame, what one process scoring alone gives."""
import importlib.util
import os
import shutil

import pytest

distributed = pytest.importorskip("dask.distributed", reason="install usq[distributed] for this test")
pd = pytest.importorskip("pandas")

HERE = os.path.dirname(__file__)
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
spec = importlib.util.spec_from_file_location("dask_score", os.path.join(HERE, "..", "examples", "dask_score.py"))
dask_score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dask_score)


def test_a_local_cluster_of_two_workers_scores_like_one_process(tmp_path):
    fixtures = os.path.join(REPO, "tests", "fixtures")
    names = ["sim_linear_640x480.png", "sim_linear_640x480_blur.png", "sim_sector_800x540.png",
             "sim_small_200x150.png", "sim_tall_180x400.png"]
    for k, n in enumerate(names):
        os.makedirs(tmp_path / "frames" / f"s{k % 2}", exist_ok=True)
        shutil.copy(os.path.join(fixtures, n), tmp_path / "frames" / f"s{k % 2}" / n)
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    (tmp_path / "frames" / "broken.png").write_bytes(b"not a png")
    folder = str(tmp_path / "frames")
    settings = {"model": None, "manifold": None, "organ": None}
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        df = dask_score.score_folder(client, folder, chunk=2, **settings)
        workers_used = len(client.scheduler_info()["workers"])
    out = tmp_path / "scores.parquet"
    df.to_parquet(out, index=False)
    back = pd.read_parquet(out)
    single = dask_score.score_chunk(dask_score.list_frames(folder), **settings)
    assert workers_used == 2
    assert len(back) == 6 and list(back["path"]) == list(single["path"])
    assert back["error"].notna().sum() == 1 and "broken.png" in back.loc[back["error"].notna(), "path"].item()
    ok = back["error"].isna()
    assert (back.loc[ok, "nrq"].to_numpy() == single.loc[ok, "nrq"].to_numpy()).all()
    assert (back.loc[ok, "quality"].to_numpy() == single.loc[ok, "quality"].to_numpy()).all()
