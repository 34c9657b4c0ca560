"""The Python package against the goldens of the independent NumPy/onnxruntime reference
(tests/golden/golden.json, written by models/reference), to the Rust tests' tolerances; numpy
arrays against paths; threads against one thread; errors as exceptions."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import usq

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SEEDED = os.path.join(REPO, "models", "tinyusfm-seeded.onnx")
FIXTURES = os.path.join(REPO, "tests", "fixtures")
GOLDEN = json.load(open(os.path.join(REPO, "tests", "golden", "golden.json")))


def at(rel):
    return os.path.join(REPO, rel)


def close(got, want, rel):
    return abs(got - want) <= rel * max(abs(want), 1.0)


@pytest.fixture(scope="module")
def scorer():
    return usq.Scorer(model=SEEDED, manifold=at("tests/fixtures/manifold"))


def test_nrq_matches_the_reference_goldens():
    checked = 0
    for g in GOLDEN["nrq"]:
        if g["manifold"] != "tests/fixtures/manifold":
            continue
        s = usq.Scorer(model=SEEDED, manifold=at(g["manifold"]), organ=g["organ"])
        r = s.nrq(at(g["path"]))
        assert close(r.nrq, g["nrq"], 1e-3), (g["path"], r.nrq, g["nrq"])
        assert len(r.worst) == g["k"]
        assert [(p.x, p.y) for p in r.patches] == [(p["x"], p["y"]) for p in g["patches"]]
        for p, w in zip(r.patches, g["patches"]):
            assert close(p.loglik, w["loglik"], 1e-3)
        checked += 1
    assert checked >= 5


def test_ulpips_matches_the_reference_goldens(scorer):
    for g in GOLDEN["ulpips"]:
        r = scorer.ulpips(at(g["ref"]), at(g["img"]))
        assert abs(r.ulpips - g["ulpips"]) <= 1e-4 * abs(g["ulpips"]) + 1e-9, (g["ref"], g["img"])
        for l, w in zip(r.layers, g["layers"]):
            assert l.block == w["block"]
            assert abs(l.structure - w["structure"]) <= 1e-4 * abs(w["structure"]) + 1e-9
            assert abs(l.gram - w["gram"]) <= 1e-4 * abs(w["gram"]) + 1e-9


@pytest.mark.parametrize("name", ["sim_linear_640x480.png", "sim_linear_640x480_rgb.png", "sim_linear_640x480_16bit.png"])
def test_arrays_score_as_their_files(scorer, name):
    path = os.path.join(FIXTURES, name)
    arr = np.asarray(Image.open(path))
    if arr.dtype == np.int32 or arr.dtype == np.int64:  # Pillow's 16-bit gray mode "I"
        arr = arr.astype(np.uint16)
    assert arr.dtype in (np.uint8, np.uint16)
    assert scorer.nrq(arr).nrq == scorer.nrq(path).nrq


def test_batches_and_threads_give_the_single_results():
    paths = [os.path.join(FIXTURES, f) for f in ["sim_linear_640x480.png", "sim_sector_800x540.png", "sim_small_200x150.png"]]
    one = usq.Scorer(model=SEEDED, manifold=at("tests/fixtures/manifold"))
    two = usq.Scorer(model=SEEDED, manifold=at("tests/fixtures/manifold"), threads=2)
    single = [one.nrq(p).nrq for p in paths]
    assert [r.nrq for r in two.nrq_batch(paths)] == single
    refs, imgs = paths[:2], [os.path.join(FIXTURES, "sim_linear_640x480_noise.png"), paths[1]]
    batch = two.ulpips_batch(refs, imgs)
    assert [r.ulpips for r in batch] == [one.ulpips(a, b).ulpips for a, b in zip(refs, imgs)]
    assert batch[1].ulpips == 0.0
    # One frame or one pair on both threads: the same numbers.
    assert [two.nrq(p).nrq for p in paths] == single
    assert two.ulpips(refs[0], imgs[0]).ulpips == one.ulpips(refs[0], imgs[0]).ulpips


def test_results_convert_to_plain_data(scorer):
    r = scorer.nrq(os.path.join(FIXTURES, "sim_linear_640x480.png"))
    d = r.to_dict()
    assert d["nrq"] == r.nrq and len(d["patches"]) == len(r.patches) == 20
    assert d["quality"] is None and r.quality is None  # the fixture manifold has no scale
    assert set(d) >= {"faults", "worst", "echo_level", "organ_margin"}
    json.dumps(d)
    u = scorer.ulpips(os.path.join(FIXTURES, "sim_linear_640x480.png"), os.path.join(FIXTURES, "sim_linear_640x480_blur.png"))
    assert json.loads(json.dumps(u.to_dict()))["ulpips"] == u.ulpips


def test_the_shipped_defaults_give_the_quality_index():
    s = usq.Scorer()
    assert s.organs == ["FetalHead", "Lung"]
    r = s.nrq(os.path.join(FIXTURES, "sim_sector_800x540.png"))
    assert r.quality is not None and 0.0 <= r.quality <= 100.0 and r.quality_organ in s.organs


def test_heatmap_is_an_rgb_array(scorer):
    h = scorer.heatmap(os.path.join(FIXTURES, "sim_linear_640x480.png"))
    assert h.dtype == np.uint8 and h.shape == (480 + 14, 640, 3)


def test_errors_are_exceptions_of_their_kind(scorer):
    with pytest.raises(usq.IoError):
        scorer.nrq("/no/such/image.png")
    with pytest.raises(usq.InvalidArgumentError, match="not shape"):
        scorer.nrq(np.zeros((4, 5, 6, 7), np.uint8))
    with pytest.raises(usq.InvalidArgumentError, match="uint8 or uint16"):
        scorer.nrq(np.zeros((300, 300), np.float32))
    with pytest.raises(usq.InvalidArgumentError, match="empty"):
        scorer.nrq(np.zeros((0, 300), np.uint8))
    with pytest.raises(usq.ImageError):
        scorer.nrq(os.path.join(FIXTURES, "README.md"))
    assert type(usq.IoError("x")).__module__ == "usq"
    with pytest.raises(usq.InvalidArgumentError):
        usq.Scorer(model=SEEDED, manifold=at("tests/fixtures/manifold"), organ="Spleen")
    with pytest.raises(usq.ModelError):
        usq.Scorer(model=os.path.join(FIXTURES, "sim_linear_640x480.png"))
    with pytest.raises(usq.InvalidArgumentError, match="one reference per image"):
        scorer.ulpips_batch([os.path.join(FIXTURES, "sim_linear_640x480.png")], [])
    assert issubclass(usq.ManifoldError, usq.UsqError)
    # The scorer still works after every error.
    assert np.isfinite(scorer.nrq(os.path.join(FIXTURES, "sim_small_200x150.png")).nrq)


def test_against_the_numpy_reference_run_live():
    """The independent reference itself (models/reference: NumPy maths, onnxruntime encoder), run
    now rather than read from the goldens, when it is installed (`pip install -e models`)."""
    ref = pytest.importorskip("usq_reference", reason="the NumPy reference is not installed (pip install -e models)")
    enc = ref.Encoder(SEEDED, batch=4)
    manifolds = ref.load_manifold_set(at("tests/fixtures/manifold"))
    s = usq.Scorer(model=SEEDED, manifold=at("tests/fixtures/manifold"))
    for name in ["sim_sector_800x540.png", "sim_tall_180x400.png"]:
        gray = ref.load_gray(os.path.join(FIXTURES, name))
        want, k, patches = ref.nrq(enc, gray, manifolds)
        got = s.nrq(gray)
        assert close(got.nrq, want, 1e-3) and len(got.worst) == k, (name, got.nrq, want)
        assert [(p.x, p.y) for p in got.patches] == [(x, y) for x, y, _ in patches]
    a, b = (ref.load_gray(os.path.join(FIXTURES, n)) for n in ["sim_linear_640x480.png", "sim_linear_640x480_noise.png"])
    want = ref.ulpips(enc, a, b)
    want = want[0] if isinstance(want, tuple) else want
    assert abs(s.ulpips(a, b).ulpips - want) <= 1e-4 * abs(want) + 1e-9


def test_fit_manifold_then_score_with_it(tmp_path):
    import shutil
    fit_frames = ["sim_linear_640x480.png", "sim_linear_640x480_16bit.png", "sim_linear_640x480_rgb.png",
                  "sim_sector_800x540.png", "sim_tall_180x400.png"]
    cal_frames = ["sim_linear_640x480.jpg", "sim_linear_640x480_blur.png", "sim_linear_640x480_noise.png",
                  "sim_sector_800x540_jpeg.png", "sim_small_200x150.png"]
    for k, f in enumerate(fit_frames):
        (tmp_path / "root" / "Phantom").mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(FIXTURES, f), tmp_path / "root" / "Phantom" / f"{k}.png")
    for k, f in enumerate(cal_frames):
        (tmp_path / "cal" / "Phantom").mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(FIXTURES, f), tmp_path / "cal" / "Phantom" / f"{k}{os.path.splitext(f)[1]}")
    rep = usq.fit_manifold(tmp_path / "root", tmp_path / "out", model=SEEDED, pca_dim=6,
                           calibration=tmp_path / "cal", threads=2)
    assert [r["organ"] for r in rep] == ["Phantom"] and rep[0]["frames"] == 5 and rep[0]["pca_dim"] == 6
    assert len(rep[0]["quality_scale"]) == 5
    s = usq.Scorer(model=SEEDED, manifold=tmp_path / "out", organ="Phantom")
    ranks = sorted(s.nrq(tmp_path / "cal" / "Phantom" / n).quality for n in os.listdir(tmp_path / "cal" / "Phantom"))
    assert np.allclose(ranks, [0, 25, 50, 75, 100], atol=1e-6)
    with pytest.raises(usq.InvalidArgumentError, match="no organ sub-folders"):
        usq.fit_manifold(tmp_path / "out", tmp_path / "x", model=SEEDED)


def test_the_gil_is_released_while_the_encoder_runs(scorer):
    """Python threads run while a frame is scored: a counter in the main thread advances."""
    import threading
    done = threading.Event()
    t = threading.Thread(target=lambda: (scorer.nrq(os.path.join(FIXTURES, "sim_sector_800x540.png")), done.set()))
    count = 0
    t.start()
    while not done.is_set():
        count += 1
    t.join()
    # With the GIL held for the whole score (hundreds of ms) the loop would get a few
    # switch intervals' worth of iterations at most; released, it spins the whole time.
    assert count > 500_000, count
