//! The runtime refuses models that break the contract, each with a reason, and never runs
//! one whose weights give non-finite features. Broken models are made by editing the seeded
//! contract model's protobuf.

use crate::common::*;
use prost::Message;
use tract_onnx::pb;
use usq::{Encoder, ErrorKind, GrayFrame};

fn seeded_proto() -> pb::ModelProto {
    pb::ModelProto::decode(std::fs::read(seeded_model()).unwrap().as_slice()).unwrap()
}

fn load(proto: &pb::ModelProto) -> usq::Result<Encoder> {
    Encoder::from_bytes(&proto.encode_to_vec(), 1)
}

fn refused(proto: &pb::ModelProto, needle: &str) {
    let e = load(proto).expect_err("a broken model must be refused");
    assert_eq!(e.kind(), ErrorKind::Model, "{e}");
    assert!(e.to_string().contains(needle), "expected '{needle}' in: {e}");
}

fn graph(p: &mut pb::ModelProto) -> &mut pb::GraphProto {
    p.graph.as_mut().unwrap()
}

#[test]
fn the_seeded_model_is_accepted_and_describes_itself() {
    let enc = Encoder::from_path(seeded_model(), 3).unwrap();
    assert_eq!(enc.batch(), 3);
    assert!(enc.info().weights.starts_with("seeded-random"), "{:?}", enc.info());
}

#[test]
fn not_onnx() {
    for bytes in
        [&b"this is a text file, not a model"[..], &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a][..], &[][..]]
    {
        let e = Encoder::from_bytes(bytes, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Model, "{e}");
        assert!(e.to_string().contains("not an ONNX model"), "{e}");
    }
    let e = Encoder::from_path(at("tests/fixtures/sim_small_200x150.png"), 1).unwrap_err();
    assert!(e.to_string().contains("sim_small_200x150.png"), "the path is in the message: {e}");
}

#[test]
fn wrong_input() {
    let mut p = seeded_proto();
    graph(&mut p).input[0].name = "pixels".into();
    refused(&p, "one input named 'image'");

    let mut p = seeded_proto();
    let Some(pb::type_proto::Value::TensorType(t)) = graph(&mut p).input[0].r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!()
    };
    t.shape.as_mut().unwrap().dim[1].value = Some(pb::tensor_shape_proto::dimension::Value::DimValue(3));
    refused(&p, "[N,1,224,224]");
}

#[test]
fn missing_or_extra_outputs() {
    let mut p = seeded_proto();
    graph(&mut p).output.retain(|o| o.name != "block10");
    refused(&p, "missing [\"block10\"]");

    let mut p = seeded_proto();
    let mut extra = graph(&mut p).output[0].clone();
    extra.name = "patch".into();
    graph(&mut p).output.push(extra);
    refused(&p, "outputs must be exactly");
}

#[test]
fn wrong_output_shape() {
    // Rewire `block10` to the patch embedding's output, [N,192,14,14].
    let mut p = seeded_proto();
    let g = graph(&mut p);
    for n in g.node.iter_mut() {
        for name in n.input.iter_mut().chain(n.output.iter_mut()) {
            if name == "block10" {
                *name = "block10_orig".into();
            } else if name == "patch" {
                *name = "block10".into();
            }
        }
    }
    for o in g.output.iter_mut().filter(|o| o.name == "block10") {
        o.r#type = None;
    }
    refused(&p, "block10");
}

#[test]
fn metadata_is_required() {
    let mut p = seeded_proto();
    p.metadata_props.retain(|e| e.key != "usq.weights");
    refused(&p, "usq.weights");

    let mut p = seeded_proto();
    p.metadata_props.iter_mut().filter(|e| e.key == "usq.layers").for_each(|e| e.value = "3,5,7,11".into());
    refused(&p, "usq.layers");

    let mut p = seeded_proto();
    p.metadata_props.iter_mut().filter(|e| e.key == "usq.version").for_each(|e| e.value = "2".into());
    refused(&p, "usq.version");
}

#[test]
fn non_finite_weights_never_give_a_score() {
    let mut p = seeded_proto();
    let w = graph(&mut p).initializer.iter_mut().find(|t| t.name == "patch_b").unwrap();
    w.raw_data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let enc = load(&p).expect("the contract itself holds");
    let f = GrayFrame::open(at("tests/fixtures/sim_small_200x150.png")).unwrap();
    let e = usq::Scorer::for_comparison(enc).compare(&f, &f).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{e}");
}

#[test]
fn zero_batch_is_refused() {
    let e = Encoder::from_path(seeded_model(), 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

/// tract picks this CPU's SIMD kernels for the shipped models (under qemu: NEON on aarch64
/// and armv7), and the int8 model's features stay close to the fp32 model's there too.
#[test]
fn simd_kernels_for_this_cpu_and_int8_close_to_fp32() {
    let mut fp32 = Encoder::from_path(repo().join("models/tinyusfm.onnx"), 1).unwrap();
    let mut int8 = Encoder::from_path(repo().join("models/tinyusfm-int8.onnx"), 1).unwrap();
    let kernels = [fp32.matmul_kernels(), int8.matmul_kernels()].concat();
    eprintln!("matrix-product kernels on {}: {}", std::env::consts::ARCH, kernels.join(", "));
    let family = match std::env::consts::ARCH {
        "x86_64" => ["avx", "fma"].as_slice(),
        "aarch64" => ["arm64simd", "arm64fp16"].as_slice(),
        "arm" => ["armv7neon"].as_slice(),
        _ => [""].as_slice(),
    };
    assert!(kernels.iter().any(|k| family.iter().any(|f| k.contains(f))), "no {family:?} kernel among {kernels:?}");
    assert!(!kernels.iter().all(|k| k.contains("generic")), "only generic kernels: {kernels:?}");

    let frame = GrayFrame::open(at("tests/fixtures/sim_sector_800x540.png")).unwrap();
    let (padded, patches) = usq::quality::nrq_patches(&frame, Some(4)).unwrap();
    let a = usq::quality::patch_descriptors(&mut fp32, &padded, &patches).unwrap();
    let b = usq::quality::patch_descriptors(&mut int8, &padded, &patches).unwrap();
    for (za, zb) in a.iter().zip(&b) {
        // Descriptors are unit length: the dot product is the cosine.
        let cos: f64 = za.iter().zip(zb).map(|(x, y)| x * y).sum();
        eprintln!("int8 vs fp32 descriptor cosine {cos:.5}");
        assert!(cos > 0.98, "int8 descriptor cosine {cos}");
    }
}

/// The fuzz targets' stand-in encoder (`tests/fixtures/tiny_contract.onnx`, written by
/// `usq_tools.export.tiny_contract`) must stay a contract model: if it stopped loading, the
/// C API fuzz target would test nothing but its own set-up. Its graph is simple enough to check
/// by the relations between its outputs: block2 = tanh(x), block10 = x tanh(x), and the cls
/// token is the mean of the patch tokens.
#[test]
fn the_tiny_contract_fixture_is_a_contract_model() {
    let mut enc = Encoder::from_path(at("tests/fixtures/tiny_contract.onnx"), 2).unwrap();
    assert!(enc.info().weights.starts_with("tiny-contract-fixture"), "{:?}", enc.info());
    let ramp: Vec<f32> = (0..224 * 224).map(|i| ((i % 224) + (i / 224)) as f32 * 0.5).collect();
    let flat = vec![200.0f32; 224 * 224];
    let out = enc.run(&[&ramp, &flat]).unwrap();
    let (t, dim) = (usq::contract::TOKENS_WITH_CLS, usq::contract::EMBED_DIM);
    for f in &out {
        let [b2, _, _, b10] = f.layer_slices();
        assert!(f.layers.iter().all(|l| l.len() == t * dim && l.iter().all(|v| v.is_finite())));
        for (i, (&y2, &y10)) in b2.iter().zip(b10).enumerate() {
            let x = y2.clamp(-0.999_999, 0.999_999).atanh();
            if y2.abs() < 0.99 {
                assert!((x * y2 - y10).abs() < 1e-3, "token {} channel {}: {y2} {y10}", i / dim, i % dim);
            }
        }
        for c in 0..dim {
            let x = |tok: usize| b2[tok * dim + c].clamp(-0.999_999, 0.999_999).atanh();
            let mean = (1..t).map(x).sum::<f32>() / (t - 1) as f32;
            assert!((x(0) - mean).abs() < 1e-2 || b2[c].abs() > 0.99, "channel {c}: cls {} mean {mean}", x(0));
        }
    }
    assert_ne!(out[0], out[1], "different images give different features");
}

/// A shape constant that claims a tensor of 7e19 elements (the fuzz target `onnx_model` found
/// this one: the cls token's shape `[1, 192]` mutated to `[384307168202282325, 192]`, which tract
/// evaluated while typing the graph, asking for 4 TB and panicking) is refused before tract
/// reads the graph, by name; so is one that claims a few gigabytes, which tract would have filled.
#[test]
fn shape_constants_past_the_limit_are_refused_before_tract_reads_the_graph() {
    for (rows, claim) in [(384_307_168_202_282_325i64, "3.8e17 rows"), (3_000_000, "3e6 rows: 2.3 GB of f32")] {
        let mut p = seeded_proto();
        let t = graph(&mut p).initializer.iter_mut().find(|t| t.name == "shp_cls_tail").expect("the cls shape");
        t.raw_data = [rows, 192].iter().flat_map(|v| v.to_le_bytes()).collect();
        t.int64_data.clear();
        refused(&p, "the shape constant 'shp_cls_tail'");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("268435456"), "{claim}: {e}");
    }
    // The seeded model's own shapes ([1, 192], [0, 197, 3, 12, 16], ...) pass: it loads (above).
}

/// A graph output that no node makes (the fuzz target `onnx_model` found it: the tiny contract
/// model with a node's output renamed, on which tract-onnx panicked looking the output up) is
/// refused by the contract check, by name.
#[test]
fn an_output_no_node_makes_is_refused() {
    let bytes = std::fs::read(at("tests/fixtures/tiny_contract.onnx")).unwrap();
    let mut p = pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let node = graph(&mut p).node.iter_mut().find(|n| n.output.iter().any(|o| o == "block4")).unwrap();
    node.output = vec!["block4_renamed".into()];
    refused(&p, "output 'block4' is not made by any node of the graph");
}

#[test]
fn a_transpose_whose_perm_is_not_a_permutation_is_refused() {
    // onnx_model found it: the tiny contract model's perm [0, 2, 1] mutated to [0, 6, 1]; tract
    // indexed the shape with the 6 and panicked.
    let bytes = std::fs::read(at("tests/fixtures/tiny_contract.onnx")).unwrap();
    for perm in [vec![0, 6, 1], vec![0, 1, 1], vec![-1, 0, 1]] {
        let mut p = pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let node = graph(&mut p).node.iter_mut().find(|n| n.op_type == "Transpose").unwrap();
        node.attribute.iter_mut().find(|a| a.name == "perm").unwrap().ints = perm.clone();
        refused(&p, &format!("has perm {perm:?}, not a permutation of its axes"));
    }
}
