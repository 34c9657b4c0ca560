//! The model contract: what every model usq runs must look like (models/README.md). Sizes,
//! names and metadata keys live here once; the encoder checks a model against them and the
//! maths, the manifolds and the live engine size their buffers from them.
//!
//! ONNX; one input `image` `[N,1,224,224]` f32 of raw gray 0..255; outputs `block2`,
//! `block4`, `block6`, `block10`, each `[N,197,192]` f32 (the residual stream after those
//! 0-based blocks, token 0 = cls); metadata `usq.layers` = "2,4,6,10", `usq.weights`
//! (provenance) and `usq.version` = "1".

/// Side of the encoder's square input.
pub const INPUT_SIDE: usize = 224;
/// The input's name.
pub const INPUT_NAME: &str = "image";
/// Tokens per encoder output, cls first.
pub const TOKENS_WITH_CLS: usize = 197;
/// Side of the patch-token grid (14 x 14 tokens of 16 x 16 pixels).
pub const GRID_SIDE: usize = 14;
/// Channels per token.
pub const EMBED_DIM: usize = 192;
/// The contract's output names, in the order features are returned.
pub const OUTPUT_NAMES: [&str; 4] = ["block2", "block4", "block6", "block10"];
/// The 0-based blocks those outputs follow (the paper's layers 3, 5, 7, 11).
pub const LAYER_BLOCKS: [usize; 4] = [2, 4, 6, 10];
/// Values per image per layer.
pub const LAYER_LEN: usize = TOKENS_WITH_CLS * EMBED_DIM;
/// Length of the NRQ patch descriptor: one mean token per layer.
pub const DESCRIPTOR_LEN: usize = OUTPUT_NAMES.len() * EMBED_DIM;
/// Metadata: the blocks the outputs follow, as "2,4,6,10".
pub const META_LAYERS: &str = "usq.layers";
/// Metadata: the contract version.
pub const META_VERSION: &str = "usq.version";
/// Metadata: where the weights come from.
pub const META_WEIGHTS: &str = "usq.weights";
/// The contract version this build reads.
pub const CONTRACT_VERSION: &str = "1";

/// The most elements any tensor of a model may have: the shapes its constants spell out are
/// checked against it before tract reads the graph (`model_shapes`). 2^28 f32 values are 1 GiB,
/// 18 times the largest tensor of the contract ViT at batch 32 (tract's attention scores,
/// 32 x 12 x 197 x 197).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 28;
