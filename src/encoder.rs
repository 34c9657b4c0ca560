//! The TinyUSFM encoder through tract: loading a contract model, checking the contract,
//! optimising once for a fixed batch, and running it with a reused state.
//!
//! The contract it checks is [`crate::contract`].

use crate::contract::{
    CONTRACT_VERSION, EMBED_DIM, INPUT_NAME, INPUT_SIDE, LAYER_BLOCKS, LAYER_LEN, META_LAYERS, META_VERSION,
    META_WEIGHTS, OUTPUT_NAMES, TOKENS_WITH_CLS,
};
use crate::error::{Context, Error, ErrorKind, Result};
use std::path::Path;
use tract_onnx::pb;
use tract_onnx::prelude::*;

const ONNX_FLOAT: i32 = 1;

/// What the model says about itself in its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// `usq.weights`: where the weights come from.
    pub weights: String,
    /// `usq.version`: the contract version, checked to be [`CONTRACT_VERSION`].
    pub version: String,
    /// The ONNX `producer_name`: the tool that exported the model (may be empty).
    pub producer: String,
}

/// How the encoder is built: images per run and threads per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Images per run; the graph is optimised for exactly this batch.
    pub batch: usize,
    /// Threads inside one encoder run: tract's multithread executor for the matrix products
    /// (feature `multithread`) and the attention op's heads; element-wise ops stay on one
    /// thread. 1 runs on the calling thread. (Across patches, separate encoders pay more:
    /// `Scorer::set_frame_threads`.)
    pub threads: usize,
}

/// Most threads an encoder may ask for (more than any scanner's CPU has cores).
pub const MAX_THREADS: usize = 64;

impl EncoderOptions {
    /// `batch` images per run on the calling thread.
    pub fn batch(batch: usize) -> EncoderOptions {
        EncoderOptions { batch, threads: 1 }
    }

    /// Fails unless an encoder can be built with these options.
    pub fn check(&self) -> Result<()> {
        if self.batch == 0 {
            crate::bail!(InvalidArgument, "batch must be at least 1");
        }
        check_threads(self.threads)
    }
}

/// Fails unless `threads` is 1 to [`MAX_THREADS`]: for an encoder, or for the threads of a job
/// that runs one encoder each.
pub fn check_threads(threads: usize) -> Result<()> {
    if !(1..=MAX_THREADS).contains(&threads) {
        crate::bail!(InvalidArgument, "threads must be 1 to {MAX_THREADS}, not {threads}");
    }
    Ok(())
}

/// The encoder, optimised for a fixed batch. Not `Sync`: one encoder per thread.
pub struct Encoder {
    state: TypedSimpleState,
    batch: usize,
    info: ModelInfo,
    /// For each contract output (in [`OUTPUT_NAMES`] order), its position in tract's outputs.
    output_index: [usize; 4],
    /// Preallocated input batch, `[batch,1,224,224]`, shared with tract for the duration of a
    /// run and written in place between runs.
    input: Arc<Tensor>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("batch", &self.batch).field("info", &self.info).finish()
    }
}

/// Encoder outputs for one image: the four layers, each `[197 * 192]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFeatures {
    /// The [`OUTPUT_NAMES`] layers in order, each 197 tokens (cls first) x 192 channels, row-major.
    pub layers: [Vec<f32>; 4],
}

impl ImageFeatures {
    /// The four layers borrowed as slices, the shape the metrics take.
    pub fn layer_slices(&self) -> [&[f32]; 4] {
        [&self.layers[0], &self.layers[1], &self.layers[2], &self.layers[3]]
    }
}

fn model_err(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Model, format!("{e:#}"))
}

impl Encoder {
    /// Loads, checks and optimises a contract model for `batch` images per run.
    pub fn from_path(path: impl AsRef<Path>, batch: usize) -> Result<Encoder> {
        Encoder::from_path_with(path, EncoderOptions::batch(batch))
    }

    /// As [`Encoder::from_path`], with threads.
    pub fn from_path_with(path: impl AsRef<Path>, options: EncoderOptions) -> Result<Encoder> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
        Encoder::from_bytes_with(&bytes, options).with_context(|| format!("loading model {}", path.display()))
    }

    /// As [`Encoder::from_path`], from the model file's bytes (for embedded models).
    pub fn from_bytes(bytes: &[u8], batch: usize) -> Result<Encoder> {
        Encoder::from_bytes_with(bytes, EncoderOptions::batch(batch))
    }

    /// As [`Encoder::from_bytes`], with threads.
    pub fn from_bytes_with(bytes: &[u8], options: EncoderOptions) -> Result<Encoder> {
        Encoder::build(bytes, options, true)
    }

    /// As [`Encoder::from_bytes_with`], with tract's own ops only (no rewrite to the crate-private `ops`):
    /// the reference the project's ops are tested against.
    pub fn from_bytes_tract_ops_only(bytes: &[u8], options: EncoderOptions) -> Result<Encoder> {
        Encoder::build(bytes, options, false)
    }

    /// [`Encoder::build_unguarded`], with a panic inside tract (a malformed graph the contract
    /// check did not foresee) an error for this model rather than the end of the process.
    fn build(bytes: &[u8], options: EncoderOptions, project_ops: bool) -> Result<Encoder> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Encoder::build_unguarded(bytes, options, project_ops)))
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Model, "tract panicked while reading this model")))
    }

    fn build_unguarded(bytes: &[u8], options: EncoderOptions, project_ops: bool) -> Result<Encoder> {
        options.check()?;
        let EncoderOptions { batch, threads } = options;
        let run_options = run_options(threads)?;
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(|e| model_err(e).context("not an ONNX model (protobuf decoding failed)"))?;
        let (info, output_index) = check_contract(&proto)?;
        let mut model =
            onnx.model_for_proto_model(&proto).map_err(|e| model_err(e).context("translating the ONNX graph"))?;
        model.set_input_fact(0, f32::fact([batch, 1, INPUT_SIDE, INPUT_SIDE]).into()).map_err(model_err)?;
        let mut typed =
            model.into_typed().map_err(|e| model_err(e).context(format!("typing the graph for batch {batch}")))?;
        if project_ops {
            let fused = crate::ops::fuse_attention(&mut typed)
                .map_err(|e| model_err(e).context("swapping in the project's attention op"))?;
            // A model whose attention is exported another way still runs (on tract's ops, slower).
            log::info!("{fused} attention blocks run as the project's fused op");
            let linear = crate::ops::fuse_linear(&mut typed)
                .map_err(|e| model_err(e).context("swapping in the project's linear ops"))?;
            log::info!("{linear} linear layers run as the project's ops");
        }
        let mut typed = typed
            .into_optimized()
            .map_err(|e| model_err(e).context(format!("optimising the graph for batch {batch}")))?;
        if project_ops {
            crate::ops::rewrite(&mut typed).map_err(|e| model_err(e).context("swapping in the project's ops"))?;
            crate::ops::normalize_layers(&mut typed)
                .map_err(|e| model_err(e).context("swapping in the project's LayerNorm op"))?;
        }
        for (i, name) in OUTPUT_NAMES.iter().enumerate() {
            let fact = typed.output_fact(output_index[i]).map_err(model_err)?;
            let shape = fact.shape.as_concrete().map(|s| s.to_vec());
            if fact.datum_type != f32::datum_type()
                || shape.as_deref() != Some(&[batch, TOKENS_WITH_CLS, EMBED_DIM][..])
            {
                crate::bail!(
                    Model,
                    "output '{name}' is {:?} {:?}, the contract wants f32 [{batch}, {TOKENS_WITH_CLS}, {EMBED_DIM}]",
                    fact.datum_type,
                    fact.shape
                );
            }
        }
        let plan = typed.into_runnable_with_options(&run_options).map_err(model_err)?;
        let state = plan.spawn().map_err(model_err)?;
        let input = Arc::new(Tensor::zero::<f32>(&[batch, 1, INPUT_SIDE, INPUT_SIDE]).map_err(model_err)?);
        Ok(Encoder { state, batch, info, output_index, input })
    }

    /// A second encoder of the same optimised model, with its own run state: the model is
    /// loaded and optimised once and shared, so each thread of a multi-threaded job runs its
    /// own forward passes without loading it again.
    pub fn fork(&self) -> Result<Encoder> {
        let state = self.state.plan().spawn().map_err(model_err)?;
        let input = Arc::new(Tensor::zero::<f32>(&[self.batch, 1, INPUT_SIDE, INPUT_SIDE]).map_err(model_err)?);
        Ok(Encoder { state, batch: self.batch, info: self.info.clone(), output_index: self.output_index, input })
    }

    /// Images per run, as built.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The model's metadata, read when it was loaded.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Runs up to `batch` images, each `224 * 224` raw gray values (0..255), and returns
    /// their features in order. A short batch is padded with zeros, whose outputs are dropped.
    pub fn run(&mut self, images: &[&[f32]]) -> Result<Vec<ImageFeatures>> {
        let mut out = Vec::with_capacity(images.len());
        self.run_with(images, |_, layers| {
            out.push(ImageFeatures { layers: layers.map(|l| l.to_vec()) });
        })?;
        Ok(out)
    }

    /// As [`Encoder::run`], handing each image's four layers to `sink` straight from tract's
    /// outputs. Memory: writes the preallocated input in place and copies nothing out; tract
    /// itself allocates during the run.
    pub fn run_with(&mut self, images: &[&[f32]], mut sink: impl FnMut(usize, [&[f32]; 4])) -> Result<()> {
        let plane = INPUT_SIDE * INPUT_SIDE;
        if images.is_empty() || images.len() > self.batch {
            crate::bail!(InvalidArgument, "{} images for an encoder of batch {}", images.len(), self.batch);
        }
        for (i, img) in images.iter().enumerate() {
            if img.len() != plane {
                crate::bail!(InvalidArgument, "image {i} holds {} values, expected {plane}", img.len());
            }
            crate::error::ensure_finite("encoder input", img)?;
        }
        {
            // tract drops its reference when a run ends; `make_mut` copies only if it kept one.
            let input = Arc::make_mut(&mut self.input);
            let mut view = input.try_as_plain_ram_mut().map_err(model_err)?;
            let buf = view.as_slice_mut::<f32>().map_err(model_err)?;
            for (i, img) in images.iter().enumerate() {
                buf[i * plane..(i + 1) * plane].copy_from_slice(img);
            }
            buf[images.len() * plane..].fill(0.0);
        }
        let outputs = self
            .state
            .run(tvec!(TValue::from_const(self.input.clone())))
            .map_err(|e| Error::new(ErrorKind::Inference, format!("{e:#}")).context("running the encoder"))?;
        let mut slices: [&[f32]; 4] = [&[]; 4];
        let plain: [_; 4] = std::array::from_fn(|k| outputs[self.output_index[k]].try_as_plain_ram());
        for (k, view) in plain.iter().enumerate() {
            let view = view.as_ref().map_err(model_err)?;
            let all = view.as_slice::<f32>().map_err(model_err)?;
            crate::error::ensure_finite(OUTPUT_NAMES[k], &all[..images.len() * LAYER_LEN])
                .map_err(|e| e.context("the encoder produced a non-finite feature"))?;
            slices[k] = all;
        }
        for i in 0..images.len() {
            sink(i, slices.map(|s| &s[i * LAYER_LEN..(i + 1) * LAYER_LEN]));
        }
        Ok(())
    }

    /// The matrix-product kernels this machine runs, one line per distinct kernel choice:
    /// tract's own description (e.g. `avx512_mmm_f32_32x12` or `arm64simd_...`), and the
    /// project's linear ops' kernels (`usq_...`).
    pub fn matmul_kernels(&self) -> Vec<String> {
        let mut kernels = std::collections::BTreeSet::new();
        for node in self.state.plan().model().nodes() {
            if matches!(node.op().name().as_ref(), "OptMatMul" | "UsqLinearI8" | "UsqLinearF32")
                && let Ok(info) = node.op().info()
            {
                kernels.extend(info.into_iter().filter_map(|l| l.split_once(" with ").map(|(_, k)| k.to_string())));
            }
        }
        kernels.into_iter().collect()
    }

    /// Time per run spent in each kind of op (tract's op name), averaged over `runs` runs of a
    /// zero batch, largest first: where the encoder's time goes on this machine.
    pub fn profile(&mut self, runs: usize) -> Result<Vec<(String, f64)>> {
        let mut by_op = std::collections::BTreeMap::<String, f64>::new();
        for _ in 0..runs.max(1) {
            self.state
                .run_plan_with_eval(tvec!(TValue::from_const(self.input.clone())), |ctx, state, node, inputs| {
                    let started = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, state, node, inputs);
                    *by_op.entry(node.op().name().to_string()).or_default() += started.elapsed().as_secs_f64() * 1e3;
                    out
                })
                .map_err(|e| Error::new(ErrorKind::Inference, format!("{e:#}")).context("profiling the encoder"))?;
        }
        let mut v: Vec<(String, f64)> = by_op.into_iter().map(|(k, t)| (k, t / runs.max(1) as f64)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    }
}

/// Element-wise ops smaller than this stay on one thread in a multithreaded encoder: more
/// than the largest of this model at the engine's largest batch (8 x 197 x 768).
#[cfg(feature = "multithread")]
const ELEMENTWISE_ON_ONE_THREAD: usize = 1 << 21;

#[cfg(feature = "multithread")]
fn run_options(threads: usize) -> Result<RunOptions> {
    use tract_linalg::multithread::Executor;
    let executor = (threads > 1).then(|| Executor::multithread_with_name(threads, "usq-encoder"));
    if threads > 1 {
        // tract splits element-wise ops over the pool from 32,768 elements; this model's
        // (197 tokens x 192 to 768 channels) are too small to pay for the dispatch: on 2 cores
        // the int8 forward went from 28.8 to 22.3 ms with them kept on one thread
        // (BENCHMARKS.md). The setting is tract's, process-wide; it is only ever raised.
        let threshold = tract_linalg::multithread::current_threading_element_threshold();
        tract_linalg::multithread::set_threading_element_threshold(threshold.max(ELEMENTWISE_ON_ONE_THREAD));
    }
    Ok(RunOptions { executor, ..RunOptions::default() })
}

#[cfg(not(feature = "multithread"))]
fn run_options(threads: usize) -> Result<RunOptions> {
    if threads > 1 {
        crate::bail!(InvalidArgument, "this build has no multithreaded encoder (cargo feature `multithread`)");
    }
    Ok(RunOptions::default())
}

fn metadata<'a>(proto: &'a pb::ModelProto, key: &str) -> Option<&'a str> {
    proto.metadata_props.iter().find(|e| e.key == key).map(|e| e.value.as_str())
}

fn describe_dims(t: &pb::type_proto::Tensor) -> Vec<String> {
    use pb::tensor_shape_proto::dimension::Value;
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(Value::DimValue(v)) => v.to_string(),
                    Some(Value::DimParam(p)) => p.clone(),
                    None => "?".into(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks everything the contract promises that can be read before building the graph.
fn check_contract(proto: &pb::ModelProto) -> Result<(ModelInfo, [usize; 4])> {
    let err = |m: String| Err(Error::new(ErrorKind::Model, m).context("the model breaks the usq model contract"));
    let Some(graph) = proto.graph.as_ref() else {
        return err("not an ONNX model: no graph".into());
    };
    crate::model_shapes::check(graph).map_err(|e| e.context("the model breaks the usq model contract"))?;
    let initialisers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> =
        graph.input.iter().filter(|i| !initialisers.contains(i.name.as_str())).collect();
    if inputs.len() != 1 || inputs[0].name != INPUT_NAME {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        return err(format!("expected one input named 'image', found {names:?}"));
    }
    let Some(pb::type_proto::Value::TensorType(t)) = inputs[0].r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return err("input 'image' is not a tensor".into());
    };
    let dims = describe_dims(t);
    let side = INPUT_SIDE.to_string();
    if t.elem_type != ONNX_FLOAT || dims.len() != 4 || dims[1] != "1" || dims[2] != side || dims[3] != side {
        return err(format!(
            "input 'image' must be float32 [N,1,{INPUT_SIDE},{INPUT_SIDE}], found element type {} shape {dims:?}",
            t.elem_type
        ));
    }
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let missing: Vec<&str> = OUTPUT_NAMES.iter().copied().filter(|n| !outputs.contains(n)).collect();
    if !missing.is_empty() || outputs.len() != OUTPUT_NAMES.len() {
        return err(format!("outputs must be exactly {OUTPUT_NAMES:?}, found {outputs:?} (missing {missing:?})"));
    }
    // tract looks each output up by name among what the graph makes, and panics where nothing does.
    let made: std::collections::HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(initialisers.iter().copied())
        .chain(graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)))
        .collect();
    if let Some(orphan) = outputs.iter().find(|o| !made.contains(**o)) {
        return err(format!("output '{orphan}' is not made by any node of the graph"));
    }
    // tract-hir indexes the input's shape with each entry of `perm` unchecked, and panics on an
    // entry past the rank (found by fuzzing: [0, 6, 1]).
    for n in graph.node.iter().filter(|n| n.op_type == "Transpose") {
        if let Some(perm) = n.attribute.iter().find(|a| a.name == "perm") {
            let mut sorted = perm.ints.clone();
            sorted.sort_unstable();
            if !sorted.iter().copied().eq(0..sorted.len() as i64) {
                return err(format!("Transpose '{}' has perm {:?}, not a permutation of its axes", n.name, perm.ints));
            }
        }
    }
    let output_index = std::array::from_fn(|k| outputs.iter().position(|o| *o == OUTPUT_NAMES[k]).unwrap());
    let layers = LAYER_BLOCKS.map(|b| b.to_string()).join(",");
    match metadata(proto, META_LAYERS) {
        Some(l) if l.replace(' ', "") == layers => {}
        other => return err(format!("metadata usq.layers must be \"{layers}\", found {other:?}")),
    }
    match metadata(proto, META_VERSION) {
        Some(CONTRACT_VERSION) => {}
        other => return err(format!("metadata usq.version must be \"{CONTRACT_VERSION}\", found {other:?}")),
    }
    let Some(weights) = metadata(proto, META_WEIGHTS).filter(|w| !w.trim().is_empty()) else {
        return err("metadata usq.weights (the weights' provenance) is missing".into());
    };
    let info = ModelInfo {
        weights: weights.to_string(),
        version: CONTRACT_VERSION.to_string(),
        producer: proto.producer_name.clone(),
    };
    Ok((info, output_index))
}
