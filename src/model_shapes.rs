//! A bound on the shapes a model's graph spells out in constants, checked on the protobuf
//! before tract reads the graph. tract evaluates constant sub-graphs while it types a model,
//! so an `Expand` or `Reshape` whose shape constant claims 3.8e17 rows makes it allocate
//! (found by fuzzing: a 4 TB allocation, a panic in tract-data; a claim of a few GB would be
//! filled, and the process killed). What counts as a shape: the integer constants that reach
//! the shape input of `Reshape`, `Expand`, `ConstantOfShape` or `Tile`, directly or through
//! `Concat`, `Cast`, `Identity`, `Squeeze` and `Unsqueeze`.

use crate::contract::MAX_TENSOR_ELEMENTS;
use crate::error::{Error, ErrorKind, Result};
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;

const INT32: i32 = 6;
const INT64: i32 = 7;

/// Refuses a graph whose shape constants (above) describe a tensor of more than
/// [`MAX_TENSOR_ELEMENTS`] elements (non-positive entries, ONNX's "copy" and "infer", count as 1).
pub fn check(graph: &pb::GraphProto) -> Result<()> {
    let constants = constants(graph);
    let producers: HashMap<&str, &pb::NodeProto> =
        graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let mut todo: Vec<&str> = graph
        .node
        .iter()
        .filter_map(|n| match n.op_type.as_str() {
            "Reshape" | "Expand" | "Tile" => n.input.get(1),
            "ConstantOfShape" => n.input.first(),
            _ => None,
        })
        .map(String::as_str)
        .collect();
    let mut seen = HashSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(values) = constants.get(name) {
            let elements = values.iter().fold(1f64, |p, &v| p * v.max(1) as f64);
            if elements > MAX_TENSOR_ELEMENTS as f64 {
                return Err(Error::new(
                    ErrorKind::Model,
                    format!(
                        "the shape constant '{name}' {values:?} describes a tensor of {elements:.3e} elements; \
                         usq reads no model with a tensor over {MAX_TENSOR_ELEMENTS}"
                    ),
                ));
            }
        } else if let Some(n) = producers.get(name) {
            match n.op_type.as_str() {
                "Concat" => todo.extend(n.input.iter().map(String::as_str)),
                "Cast" | "Identity" | "Squeeze" | "Unsqueeze" => todo.extend(n.input.first().map(String::as_str)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The integer initialisers and `Constant` nodes of at most 8 values (what a shape can be), by name.
fn constants(graph: &pb::GraphProto) -> HashMap<&str, Vec<i64>> {
    let from_nodes = graph.node.iter().filter(|n| n.op_type == "Constant").filter_map(|n| {
        let t = n.attribute.iter().find(|a| a.name == "value")?.t.as_ref()?;
        Some((n.output.first()?.as_str(), t))
    });
    graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .chain(from_nodes)
        .filter_map(|(name, t)| Some((name, integers(t).filter(|v| v.len() <= 8)?)))
        .collect()
}

fn integers(t: &pb::TensorProto) -> Option<Vec<i64>> {
    match t.data_type {
        INT64 if !t.raw_data.is_empty() => {
            Some(t.raw_data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect())
        }
        INT64 => Some(t.int64_data.clone()),
        INT32 if !t.raw_data.is_empty() => {
            Some(t.raw_data.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect())
        }
        INT32 => Some(t.int32_data.iter().map(|&v| v as i64).collect()),
        _ => None,
    }
}
