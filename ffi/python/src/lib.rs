//! Python bindings of usq: translation only. Frames come in as numpy arrays (or paths), go to
//! the library's `Scorer`, and its reports come back as small typed objects. The GIL is
//! released while the encoder runs; every library error becomes a Python exception of its kind.

use numpy::{PyArray3, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;
use std::sync::Mutex;
use usq::{ErrorKind, GrayFrame, ScoreOptions};

create_exception!(usq, UsqError, PyException, "Any error of the usq library.");
create_exception!(usq, IoError, UsqError, "A file could not be read or written.");
create_exception!(usq, ImageError, UsqError, "An image could not be decoded or has an unsupported layout.");
create_exception!(usq, ModelError, UsqError, "The model is not ONNX or breaks the usq model contract.");
create_exception!(
    usq,
    ManifoldError,
    UsqError,
    "A manifold file is missing keys, malformed or does not fit the model."
);
create_exception!(usq, InvalidArgumentError, UsqError, "An argument is out of range (an unknown organ, a bad size).");
create_exception!(usq, NonFiniteError, UsqError, "A NaN or infinity reached a score.");
create_exception!(usq, InferenceError, UsqError, "The encoder failed while running.");

/// The library error as the exception of its kind, with its whole context chain as message.
fn py_err(e: usq::Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::Io => IoError::new_err(msg),
        ErrorKind::Image => ImageError::new_err(msg),
        ErrorKind::Model => ModelError::new_err(msg),
        ErrorKind::Manifold => ManifoldError::new_err(msg),
        ErrorKind::InvalidArgument | ErrorKind::WrongSize | ErrorKind::WrongState | ErrorKind::Busy => {
            InvalidArgumentError::new_err(msg)
        }
        ErrorKind::NonFinite => NonFiniteError::new_err(msg),
        ErrorKind::Inference => InferenceError::new_err(msg),
    }
}

/// A frame from a path (str or os.PathLike) or a numpy array: H x W uint8 or uint16 gray,
/// H x W x 3 (RGB) or H x W x 4 (RGBA) uint8 or uint16 colour; converted to gray exactly as
/// `usq score` converts decoded files (16-bit by the full range, colour by OpenCV's weights).
fn frame_of(obj: &Bound<'_, PyAny>) -> PyResult<GrayFrame> {
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, u8>>() {
        return array_frame(a.shape(), a.as_array().iter().copied().collect(), |w, h, v| {
            Some(match a.ndim() {
                2 => image::DynamicImage::ImageLuma8(image::ImageBuffer::from_raw(w, h, v)?),
                _ if a.shape()[2] == 3 => image::DynamicImage::ImageRgb8(image::ImageBuffer::from_raw(w, h, v)?),
                _ => image::DynamicImage::ImageRgba8(image::ImageBuffer::from_raw(w, h, v)?),
            })
        });
    }
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, u16>>() {
        return array_frame(a.shape(), a.as_array().iter().copied().collect(), |w, h, v| {
            Some(match a.ndim() {
                2 => image::DynamicImage::ImageLuma16(image::ImageBuffer::from_raw(w, h, v)?),
                _ if a.shape()[2] == 3 => image::DynamicImage::ImageRgb16(image::ImageBuffer::from_raw(w, h, v)?),
                _ => image::DynamicImage::ImageRgba16(image::ImageBuffer::from_raw(w, h, v)?),
            })
        });
    }
    if let Ok(p) = obj.extract::<PathBuf>() {
        return GrayFrame::open(p).map_err(py_err);
    }
    let dtype = obj.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| obj.get_type().to_string());
    Err(InvalidArgumentError::new_err(format!(
        "an image is a path or a numpy array of uint8 or uint16 (H x W gray, H x W x 3 RGB, H x W x 4 RGBA), not {dtype}"
    )))
}

/// A frame of a batch: arrays are copied while the GIL is held; paths are decoded later, on the
/// scoring threads, so a batch of ten thousand paths never holds ten thousand frames.
enum Input {
    Frame(GrayFrame),
    Path(PathBuf),
}

impl Input {
    fn of(obj: &Bound<'_, PyAny>) -> PyResult<Input> {
        if obj.hasattr("__array_interface__")? || obj.hasattr("dtype")? {
            return frame_of(obj).map(Input::Frame);
        }
        match obj.extract::<PathBuf>() {
            Ok(p) => Ok(Input::Path(p)),
            Err(_) => frame_of(obj).map(Input::Frame),
        }
    }

    fn with_frame<R>(&self, f: impl FnOnce(&GrayFrame) -> usq::Result<R>) -> usq::Result<R> {
        match self {
            Input::Frame(g) => f(g),
            Input::Path(p) => f(&GrayFrame::open(p)?),
        }
    }
}

fn inputs(objs: &Bound<'_, PyAny>) -> PyResult<Vec<Input>> {
    objs.try_iter()?.map(|i| Input::of(&i?)).collect()
}

fn array_frame<T>(
    shape: &[usize],
    values: Vec<T>,
    build: impl FnOnce(u32, u32, Vec<T>) -> Option<image::DynamicImage>,
) -> PyResult<GrayFrame> {
    let ok = match shape {
        [_, _] => true,
        [_, _, c] => *c == 3 || *c == 4,
        _ => false,
    };
    if !ok {
        return Err(InvalidArgumentError::new_err(format!(
            "an image array is H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA), not shape {shape:?}"
        )));
    }
    let (h, w) = (shape[0], shape[1]);
    usq::imaging::frame::check_frame_size(w, h).map_err(py_err)?;
    let img = build(w as u32, h as u32, values).ok_or_else(|| InvalidArgumentError::new_err("array size mismatch"))?;
    GrayFrame::from_image(img).map_err(py_err)
}

/// One scored patch: its top-left corner in the padded frame and its log-likelihood.
#[pyclass(frozen, get_all, module = "usq")]
#[derive(Clone)]
struct Patch {
    x: usize,
    y: usize,
    loglik: f64,
}

#[pymethods]
impl Patch {
    fn __repr__(&self) -> String {
        format!("Patch(x={}, y={}, loglik={:.4})", self.x, self.y, self.loglik)
    }
}

/// TinyUSFM-NRQ of one frame, with its patches, the calibrated index and the fault flags.
#[pyclass(frozen, get_all, module = "usq")]
struct NrqResult {
    /// The paper's score: mean log-likelihood of the worst 15 % of patches (higher is better).
    nrq: f64,
    /// The calibrated quality index (0-100) beside it, or None without a scale.
    quality: Option<f64>,
    /// The organ the index is read against.
    quality_organ: Option<String>,
    /// The organ scored against; None when all organs were combined.
    organ: Option<String>,
    /// Every patch scored, in grid order.
    patches: Vec<Patch>,
    /// Indices into `patches` of the worst region, worst first.
    worst: Vec<usize>,
    /// Acquisition faults raised (names, the one that explains the others first).
    faults: Vec<String>,
    /// The checks' measured values.
    echo_level: f64,
    clipped_share: f64,
    dead_width: f64,
    pixel_std: f64,
    /// Organ margin of the checks (nats), None without clean statistics.
    organ_margin: Option<f64>,
}

impl NrqResult {
    fn of(r: usq::ScoreReport) -> NrqResult {
        let m = r.checks.measures;
        NrqResult {
            nrq: r.nrq,
            quality: r.quality.as_ref().map(|q| q.index),
            quality_organ: r.quality.map(|q| q.organ),
            organ: r.organ,
            patches: r.patches.iter().map(|p| Patch { x: p.x, y: p.y, loglik: p.loglik }).collect(),
            worst: r.worst,
            faults: r.faults.iter().map(|f| f.name().to_string()).collect(),
            echo_level: m.echo_level.into(),
            clipped_share: m.clipped_share.into(),
            dead_width: m.dead_width.into(),
            pixel_std: m.pixel_std.into(),
            organ_margin: r.checks.organ_margin,
        }
    }
}

#[pymethods]
impl NrqResult {
    /// The result as plain Python data (the shape of `usq score --json`, checks flattened).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("nrq", self.nrq)?;
        d.set_item("quality", self.quality)?;
        d.set_item("quality_organ", &self.quality_organ)?;
        d.set_item("organ", &self.organ)?;
        let patches = PyList::empty(py);
        for p in &self.patches {
            let pd = PyDict::new(py);
            pd.set_item("x", p.x)?;
            pd.set_item("y", p.y)?;
            pd.set_item("loglik", p.loglik)?;
            patches.append(pd)?;
        }
        d.set_item("patches", patches)?;
        d.set_item("worst", &self.worst)?;
        d.set_item("faults", &self.faults)?;
        for (k, v) in [
            ("echo_level", self.echo_level),
            ("clipped_share", self.clipped_share),
            ("dead_width", self.dead_width),
            ("pixel_std", self.pixel_std),
        ] {
            d.set_item(k, v)?;
        }
        d.set_item("organ_margin", self.organ_margin)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let q = self.quality.map_or("None".into(), |q| format!("{q:.1}"));
        format!("NrqResult(nrq={:.4}, quality={q}, patches={}, faults={:?})", self.nrq, self.patches.len(), self.faults)
    }
}

/// One layer's share of a uLPIPS score.
#[pyclass(frozen, get_all, module = "usq")]
#[derive(Clone)]
struct Layer {
    block: usize,
    structure: f64,
    gram: f64,
}

#[pymethods]
impl Layer {
    fn __repr__(&self) -> String {
        format!("Layer(block={}, structure={:.6}, gram={:.6})", self.block, self.structure, self.gram)
    }
}

/// TinyUSFM-uLPIPS of an image against its reference (lower is closer; 0 = identical).
#[pyclass(frozen, get_all, module = "usq")]
struct UlpipsResult {
    ulpips: f64,
    layers: Vec<Layer>,
}

#[pymethods]
impl UlpipsResult {
    /// The result as plain Python data (the shape of `usq compare --json`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("ulpips", self.ulpips)?;
        let layers = PyList::empty(py);
        for l in &self.layers {
            let ld = PyDict::new(py);
            ld.set_item("block", l.block)?;
            ld.set_item("structure", l.structure)?;
            ld.set_item("gram", l.gram)?;
            layers.append(ld)?;
        }
        d.set_item("layers", layers)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("UlpipsResult(ulpips={:.6})", self.ulpips)
    }
}

fn ulpips_of(r: usq::CompareReport) -> UlpipsResult {
    UlpipsResult {
        ulpips: r.ulpips,
        layers: r.layers.iter().map(|l| Layer { block: l.block, structure: l.structure, gram: l.gram }).collect(),
    }
}

/// A model and its organ manifolds, loaded once: NRQ, uLPIPS and heatmaps of numpy frames.
#[pyclass(module = "usq")]
struct Scorer {
    /// One scorer per thread, over one loaded model (`threads` of them), 4 patches per run.
    scorers: Mutex<Vec<usq::Scorer>>,
    /// The same for comparisons, built on first use: uLPIPS runs one frame at a time, and a
    /// batch-4 graph would spend 4 frames' work on each.
    comparers: Mutex<Vec<usq::Scorer>>,
    /// One frame (`nrq`, `heatmap`) or one pair (`ulpips`) on every thread: a fork of the first
    /// scorer (comparer) whose frame threads split the frame's patches (the pair's two frames),
    /// built on first use when `threads` > 1.
    single: Mutex<Option<usq::Scorer>>,
    single_comparer: Mutex<Option<usq::Scorer>>,
    model: usq::ModelSource,
    options: ScoreOptions,
    organs: Vec<String>,
}

impl Scorer {
    /// Runs `f` on the scorer for one frame: the first one, or with several threads a fork of it
    /// that spreads the frame over all of them (the same scores).
    fn with_single<R>(&self, f: impl FnOnce(&mut usq::Scorer) -> usq::Result<R>) -> usq::Result<R> {
        let threads = lock(&self.scorers).len();
        if threads == 1 {
            return f(&mut lock(&self.scorers)[0]);
        }
        // Lock order: `single`, then `scorers` (only to fork); nothing takes them the other way.
        let mut single = self.single.lock().unwrap_or_else(|e| e.into_inner());
        if single.is_none() {
            let mut s = lock(&self.scorers)[0].fork()?;
            s.set_frame_threads(threads)?;
            *single = Some(s);
        }
        f(single.as_mut().expect("built above"))
    }

    /// As [`Scorer::with_single`] for one comparison: its two frames on two threads.
    fn with_single_comparer<R>(&self, f: impl FnOnce(&mut usq::Scorer) -> usq::Result<R>) -> usq::Result<R> {
        let threads = lock(&self.scorers).len();
        if threads == 1 {
            return self.with_comparers(|c| f(&mut c[0]));
        }
        let mut single = self.single_comparer.lock().unwrap_or_else(|e| e.into_inner());
        if single.is_none() {
            let mut s = self.with_comparers(|c| c[0].fork())?;
            s.set_frame_threads(2)?;
            *single = Some(s);
        }
        f(single.as_mut().expect("built above"))
    }

    /// Runs `f` on the comparison scorers, loading them first if needed.
    fn with_comparers<R>(&self, f: impl FnOnce(&mut [usq::Scorer]) -> usq::Result<R>) -> usq::Result<R> {
        let mut c = lock(&self.comparers);
        if c.is_empty() {
            let threads = lock(&self.scorers).len();
            let first = usq::Scorer::new(&self.model, usq::ManifoldSource::None, usq::EncoderOptions::batch(1))?;
            let mut v = first.forks(threads - 1)?;
            v.insert(0, first);
            *c = v;
        }
        f(&mut c)
    }
}

fn lock<'a>(m: &'a Mutex<Vec<usq::Scorer>>) -> std::sync::MutexGuard<'a, Vec<usq::Scorer>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[pymethods]
impl Scorer {
    /// `model`: a contract ONNX path (default: the shipped fp32 model); `manifold`: a folder of
    /// `<Organ>.npz` (default: the shipped set); `organ`: score against that organ only
    /// (default: all, combined by log-mean-exp); `threads`: frames of a batch scored at once, or
    /// one frame's patches (one pair's two frames) split over them.
    #[new]
    #[pyo3(signature = (model=None, manifold=None, organ=None, threads=1))]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        manifold: Option<PathBuf>,
        organ: Option<String>,
        threads: usize,
    ) -> PyResult<Scorer> {
        usq::encoder::check_threads(threads).map_err(py_err)?;
        let options = ScoreOptions { organ, max_patches: None };
        let model = usq::ModelSource::path_or(model, usq::ModelSource::Reference);
        let scorers = py
            .detach(|| {
                let s = usq::Scorer::new(
                    &model,
                    usq::ManifoldSource::dir_or_default(manifold),
                    usq::EncoderOptions::batch(4),
                )?;
                s.check_options(&options)?;
                let mut v = s.forks(threads - 1)?;
                v.insert(0, s);
                Ok::<_, usq::Error>(v)
            })
            .map_err(py_err)?;
        let organs =
            scorers[0].manifolds().map(|m| m.organs.iter().map(|o| o.name.clone()).collect()).unwrap_or_default();
        Ok(Scorer {
            scorers: Mutex::new(scorers),
            comparers: Mutex::new(Vec::new()),
            single: Mutex::new(None),
            single_comparer: Mutex::new(None),
            model,
            options,
            organs,
        })
    }

    /// The organs of the manifold set, sorted.
    #[getter]
    fn organs(&self) -> Vec<String> {
        self.organs.clone()
    }

    /// TinyUSFM-NRQ of one frame (higher is better).
    fn nrq(&self, py: Python<'_>, image: &Bound<'_, PyAny>) -> PyResult<NrqResult> {
        let frame = frame_of(image)?;
        let r = py.detach(|| self.with_single(|s| s.score(&frame, &self.options))).map_err(py_err)?;
        Ok(NrqResult::of(r))
    }

    /// NRQ of every frame, in order, `threads` at once.
    fn nrq_batch(&self, py: Python<'_>, images: &Bound<'_, PyAny>) -> PyResult<Vec<NrqResult>> {
        let frames = inputs(images)?;
        let results = py.detach(|| {
            let mut scorers = lock(&self.scorers);
            let mut out = Vec::with_capacity(frames.len());
            let work = |s: &mut usq::Scorer, f: &Input| f.with_frame(|g| s.score(g, &self.options));
            usq::dataset::map_ordered(&mut scorers, &frames, work, |_, r| out.push(r));
            out.into_iter().collect::<usq::Result<Vec<_>>>()
        });
        Ok(results.map_err(py_err)?.into_iter().map(NrqResult::of).collect())
    }

    /// TinyUSFM-uLPIPS of `image` against `reference` (lower is closer).
    fn ulpips(&self, py: Python<'_>, reference: &Bound<'_, PyAny>, image: &Bound<'_, PyAny>) -> PyResult<UlpipsResult> {
        let (r, i) = (frame_of(reference)?, frame_of(image)?);
        let c = py.detach(|| self.with_single_comparer(|c| c.compare(&r, &i))).map_err(py_err)?;
        Ok(ulpips_of(c))
    }

    /// uLPIPS of each image against the reference at the same position, `threads` at once.
    fn ulpips_batch(
        &self,
        py: Python<'_>,
        references: &Bound<'_, PyAny>,
        images: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<UlpipsResult>> {
        let (refs, imgs) = (inputs(references)?, inputs(images)?);
        if refs.len() != imgs.len() {
            return Err(InvalidArgumentError::new_err(format!(
                "{} references for {} images: one reference per image",
                refs.len(),
                imgs.len()
            )));
        }
        let pairs: Vec<(Input, Input)> = refs.into_iter().zip(imgs).collect();
        let results = py.detach(|| {
            self.with_comparers(|scorers| {
                let mut out = Vec::with_capacity(pairs.len());
                let work =
                    |s: &mut usq::Scorer, (r, i): &(Input, Input)| r.with_frame(|r| i.with_frame(|i| s.compare(r, i)));
                usq::dataset::map_ordered(scorers, &pairs, work, |_, c| out.push(c));
                out.into_iter().collect::<usq::Result<Vec<_>>>()
            })
        });
        Ok(results.map_err(py_err)?.into_iter().map(ulpips_of).collect())
    }

    /// The frame tinted by its patch scores, the worst region outlined, a colour bar below:
    /// an RGB uint8 array (as `usq score --heatmap` writes).
    fn heatmap<'py>(&self, py: Python<'py>, image: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let frame = frame_of(image)?;
        let img = py
            .detach(|| {
                let r = self.with_single(|s| s.score(&frame, &self.options))?;
                Ok::<_, usq::Error>(usq::Scorer::heatmap(&frame, &r))
            })
            .map_err(py_err)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let flat = numpy::PyArray1::from_vec(py, img.into_raw());
        flat.reshape([h, w, 3])
    }

    fn __repr__(&self) -> String {
        format!(
            "Scorer(organs={:?}, organ={:?}, threads={})",
            self.organs,
            self.options.organ,
            lock(&self.scorers).len()
        )
    }
}

/// Fits one manifold per organ sub-folder of `root` (its clean frames, found recursively) and
/// writes `<Organ>.npz` into `out`, as `usq fit-nrq` does: the frames' spread patches encoded
/// on `threads` threads, PCA to at most `pca_dim`, a `components`-component GMM, the
/// acquisition checks' clean statistics, and the quality index's scale from the last `holdout`
/// share of the frames (held out of the fit) or from `calibration` (a root laid out the same
/// way). Returns one dict per organ with the fit's figures.
#[pyfunction]
#[pyo3(signature = (root, out, model=None, patches_per_image=12, pca_dim=128, components=8, seed=0, holdout=0.2, calibration=None, threads=1))]
#[allow(clippy::too_many_arguments)]
fn fit_manifold<'py>(
    py: Python<'py>,
    root: PathBuf,
    out: PathBuf,
    model: Option<PathBuf>,
    patches_per_image: usize,
    pca_dim: usize,
    components: usize,
    seed: u64,
    holdout: f64,
    calibration: Option<PathBuf>,
    threads: usize,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    use usq::fitting::{self, Calibration};
    usq::encoder::check_threads(threads).map_err(py_err)?;
    let cal = match calibration {
        Some(dir) => Calibration::Folder(dir),
        None => Calibration::HoldOut(holdout),
    };
    let settings = usq::manifold::fit::FitSettings { max_dim: pca_dim, components, seed, ..Default::default() };
    let fits = py
        .detach(|| {
            let organs = fitting::organ_folders(&root)?;
            let jobs = organs.iter().map(|o| fitting::organ_job(o, &cal)).collect::<usq::Result<Vec<_>>>()?;
            let encoder =
                usq::ModelSource::path_or(model, usq::ModelSource::Reference).load(usq::EncoderOptions::batch(4))?;
            let mut encoders = (0..threads).map(|_| encoder.fork()).collect::<usq::Result<Vec<_>>>()?;
            std::fs::create_dir_all(&out).map_err(|e| usq::Error::from_source(ErrorKind::Io, &e))?;
            let mut fits = Vec::new();
            for job in &jobs {
                let fit = fitting::fit_organ_job(&mut encoders, job, patches_per_image, &settings, &mut |_, _, _| {})?;
                let path = out.join(format!("{}.npz", job.organ));
                fit.model.save(&path)?;
                fits.push((path, job.calibration.len(), job.skipped.len(), fit));
            }
            Ok::<_, usq::Error>(fits)
        })
        .map_err(py_err)?;
    fits.into_iter()
        .map(|(path, calibration_frames, skipped, fit)| {
            let d = PyDict::new(py);
            d.set_item("organ", &fit.model.name)?;
            d.set_item("path", path)?;
            d.set_item("frames", fit.frames)?;
            d.set_item("skipped_files", skipped)?;
            d.set_item("patches", fit.report.samples)?;
            d.set_item("pca_dim", fit.report.dim)?;
            d.set_item("explained_variance", fit.report.explained_variance)?;
            d.set_item("em_iterations", fit.report.em_iterations)?;
            d.set_item("converged", fit.report.converged)?;
            d.set_item("mean_loglik", fit.report.mean_loglik)?;
            d.set_item("calibration_frames", calibration_frames)?;
            d.set_item("quality_scale", fit.model.quality.as_ref().map(|q| q.values().to_vec()))?;
            Ok(d)
        })
        .collect()
}

/// The compiled part of the `usq` package (see `usq/__init__.py`).
#[pymodule]
fn _usq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Scorer>()?;
    m.add_function(wrap_pyfunction!(fit_manifold, m)?)?;
    m.add_class::<NrqResult>()?;
    m.add_class::<UlpipsResult>()?;
    m.add_class::<Patch>()?;
    m.add_class::<Layer>()?;
    for (name, e) in [
        ("UsqError", py.get_type::<UsqError>()),
        ("IoError", py.get_type::<IoError>()),
        ("ImageError", py.get_type::<ImageError>()),
        ("ModelError", py.get_type::<ModelError>()),
        ("ManifoldError", py.get_type::<ManifoldError>()),
        ("InvalidArgumentError", py.get_type::<InvalidArgumentError>()),
        ("NonFiniteError", py.get_type::<NonFiniteError>()),
        ("InferenceError", py.get_type::<InferenceError>()),
    ] {
        m.add(name, e)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
