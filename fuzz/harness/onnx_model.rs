//! A model from arbitrary bytes (seeded with the shipped int8 model, so mutations are mostly
//! of a real TinyUSFM protobuf, and with the 3 KB contract fixture `tests/fixtures/tiny_contract.onnx`,
//! which the mutator can take apart a thousand times faster): loading and the model contract give an error or an encoder
//! that honours the contract, never a panic or an abort.

pub fn run(data: &[u8]) {
    let _ = usq::Encoder::from_bytes(data, 1);
}
