"""Write tests/fixtures/tiny_contract.onnx: the smallest model that honours the encoder contract
(models/README.md: input `image` [N,1,224,224], outputs block2/4/6/10 [N,197,192], the usq.*
metadata), a few kilobytes and microseconds a forward instead of the ViT's 5-20 MB and tens of
milliseconds.

It is not an encoder and its scores mean nothing. It is for the fuzz targets whose subject is
not the encoder: `c_api_sequence` drives the C API's state machine, where a real encoder under
AddressSanitizer made each input cost half a second (2 inputs a second), and `onnx_model`
gets it as a second seed, a whole valid protobuf the mutator can walk in microseconds.

Graph: per 16x16 patch the mean gray (AveragePool), a 1x1 Conv to 192 channels (seeded weights,
so the channels differ), the [N,196,192] tokens, a "cls" token that is their mean, then per
output a different elementwise map (Tanh, Erf, Mul/Add), so the four layers differ.

    models/.venv/bin/python -m usq_tools.export.tiny_contract            # write it
"""
import os

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h

from ..paths import ROOT
from .contract import D, IMG, OUT_BLOCKS, PATCH, T
from .seeded import GraphBuilder

SEED = 20261207
OUT_PATH = os.path.join(ROOT, "tests", "fixtures", "tiny_contract.onnx")
METADATA = {
    "usq.layers": ",".join(map(str, OUT_BLOCKS)),
    "usq.weights": f"tiny-contract-fixture:numpy-default_rng-{SEED} (not an encoder; for fuzzing)",
    "usq.version": "1",
}


def build_model(seed=SEED):
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    nodes, inits, const, node = g.nodes, g.inits, g.const, g.node

    x = node("AveragePool", ["image"], "patch_mean", kernel_shape=[PATCH, PATCH], strides=[PATCH, PATCH])
    # gray 0..255 to about -1..1, then 192 different affine channels
    w = (rng.uniform(-1, 1, (D, 1, 1, 1)) / 127.5).astype(np.float32)
    b = (rng.uniform(-1, 1, D) - w[:, 0, 0, 0] * 127.5).astype(np.float32)
    x = node("Conv", [x, const("chan_w", w), const("chan_b", b)], "channels", kernel_shape=[1, 1])
    x = node("Reshape", [x, const("shp_flat", np.array([0, D, -1], np.int64))], "flat")
    x = node("Transpose", [x], "tokens", perm=[0, 2, 1])                          # [N,196,192]
    cls = node("ReduceMean", [x], "cls", axes=[1], keepdims=1)            # opset 17: axes an attribute
    x = node("Concat", [cls, x], "stream", axis=1)                                 # [N,197,192]
    outs = [
        node("Tanh", [x], "block2"),
        node("Erf", [x], "block4"),
        node("Add", [node("Mul", [x, const("k6", np.array(0.5, np.float32))], "half6"),
                     const("c6", rng.normal(0, 0.1, (1, 1, D)).astype(np.float32))], "block6"),
        node("Mul", [x, node("Tanh", [x], "t10")], "block10"),
    ]
    graph = h.make_graph(nodes, "usq_tiny_contract",
                         [h.make_tensor_value_info("image", TP.FLOAT, ["N", 1, IMG, IMG])],
                         [h.make_tensor_value_info(o, TP.FLOAT, ["N", T, D]) for o in outs],
                         initializer=inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], producer_name="usq-export_tiny_contract")
    model.ir_version = 8
    h.set_model_props(model, METADATA)
    onnx.checker.check_model(model)
    return model


def main():
    model = build_model()
    onnx.save(model, OUT_PATH)
    import onnxruntime as ort
    sess = ort.InferenceSession(OUT_PATH, providers=["CPUExecutionProvider"])
    gray = np.random.default_rng(1).integers(0, 256, (2, 1, IMG, IMG)).astype(np.float32)
    got = sess.run(None, {"image": gray})
    assert [g.shape for g in got] == [(2, T, D)] * 4, [g.shape for g in got]
    assert all(np.isfinite(g).all() for g in got)
    print(f"wrote {OUT_PATH} ({os.path.getsize(OUT_PATH)} bytes); outputs {[g.shape for g in got]}")


if __name__ == "__main__":
    main()
