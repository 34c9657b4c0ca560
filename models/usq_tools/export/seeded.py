"""Write models/tinyusfm-seeded.onnx: the TinyUSFM (timm ViT-Tiny) *contract* model with seeded
random weights, built directly with onnx.helper (no torch needed).

It is not trained: it exists so the Rust runtime and the goldens can be exercised end to end
with a model that has exactly the shapes, ops and I/O contract of the real exported encoder.

    models/.venv/bin/python -m usq_tools.export.seeded            # write the model
    models/.venv/bin/python -m usq_tools.export.seeded --check    # write it, then verify against a NumPy forward pass
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

from ..paths import MODELS
from .contract import D, GRID, HD, HEADS, IMG, MLP, OUT_BLOCKS, PATCH, T

SEED = 20261127
DEPTH = 11                   # blocks 0..10: the metric never reads block 11 or the final norm
OUT_PATH = os.path.join(MODELS, "tinyusfm-seeded.onnx")
METADATA = {
    "usq.layers": ",".join(map(str, OUT_BLOCKS)),
    "usq.weights": f"seeded-random:numpy-default_rng-{SEED} (not trained)",
    "usq.version": "1",
}


def make_params(seed=SEED):
    """Unfolded weights (3-channel patch conv) initialised like torch/timm, so activations are
    in a realistic range and every affine parameter is non-trivial (a bug in any of them shows)."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)
    p = {}
    # nn.Conv2d default (kaiming_uniform a=sqrt(5)): U(+-1/sqrt(fan_in)), fan_in = 3*16*16.
    bound = 1 / np.sqrt(3 * PATCH * PATCH)
    p["pe_w"] = f32(rng.uniform(-bound, bound, (D, 3, PATCH, PATCH)))
    p["pe_b"] = f32(rng.uniform(-bound, bound, (D,)))
    p["cls"] = f32(rng.normal(0, 0.02, (1, 1, D)))
    p["pos"] = f32(rng.normal(0, 0.02, (1, T, D)))
    for b in range(DEPTH):
        for ln in ("ln1", "ln2"):
            p[f"b{b}_{ln}_g"] = f32(1 + rng.normal(0, 0.05, D))
            p[f"b{b}_{ln}_b"] = f32(rng.normal(0, 0.02, D))
        # nn.Linear default U(+-1/sqrt(fan_in)) (larger than timm's trunc_normal(0.02), so the
        # attention/MLP branches contribute visibly to the residual stream). Stored [in, out].
        for name, (k, n) in [("qkv", (D, 3 * D)), ("proj", (D, D)), ("fc1", (D, MLP)), ("fc2", (MLP, D))]:
            bd = 1 / np.sqrt(k)
            p[f"b{b}_{name}_w"] = f32(rng.uniform(-bd, bd, (k, n)))
            p[f"b{b}_{name}_b"] = f32(rng.uniform(-bd, bd, (n,)) * 0.5)
    return p


def fold_preprocessing(w3, b3):
    """gray/255 -> 3 channels -> (x-0.5)/0.5 equals g/127.5 - 1 in every channel, so
    conv(W, x3) + b = conv(sum_c W[:,c]/127.5, g) + (b - sum_{c,h,w} W). Done in float64."""
    w = w3.astype(np.float64)
    w1 = w.sum(axis=1, keepdims=True) / 127.5
    b1 = b3.astype(np.float64) - w.sum(axis=(1, 2, 3))
    return w1.astype(np.float32), b1.astype(np.float32)


# The producer names (usq-export_seeded here, usq-convert_tinyusfm in convert) are the former scripts'
# names, kept so that rebuilt models are byte-identical to the shipped ones.
class GraphBuilder:
    """The nodes and initialisers of an ONNX graph being built (also usq_tools.export.tiny_contract)."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, arr):
        """An initialiser; returns its name."""
        self.inits.append(nh.from_array(np.asarray(arr), name))
        return name

    def node(self, op, ins, out, **kw):
        """A node with one output, named after it; returns the output's name."""
        self.nodes.append(h.make_node(op, ins, [out], name=out, **kw))
        return out


def build_model(p, metadata=METADATA, graph_name="tinyusfm_seeded", producer="usq-export_seeded"):
    """The contract graph from unfolded weights p (keys as make_params returns: pe_w [192,3,16,16],
    pe_b, cls, pos, b{i}_{ln1,ln2}_{g,b}, b{i}_{qkv,proj,fc1,fc2}_{w [in,out],b}, i = 0..10).
    Reused by usq_tools.export.convert for converted and trained weights."""
    g = GraphBuilder()
    nodes, inits, const, node = g.nodes, g.inits, g.const, g.node

    w1, b1 = fold_preprocessing(p["pe_w"], p["pe_b"])
    x = node("Conv", ["image", const("patch_w", w1), const("patch_b", b1)], "patch",
             kernel_shape=[PATCH, PATCH], strides=[PATCH, PATCH])
    # Reshape dims use 0 (copy N) / -1 so the graph is batch-dynamic.
    x = node("Reshape", [x, const("shp_flat", np.array([0, D, -1], np.int64))], "patch_flat")
    x = node("Transpose", [x], "tokens", perm=[0, 2, 1])                      # [N,196,192]
    # cls token broadcast to [N,1,192] with a shape built from the input's batch dim.
    n = node("Slice", [node("Shape", ["image"], "img_shape"), const("i64_0", np.array([0], np.int64)),
                       const("i64_1", np.array([1], np.int64))], "batch")
    cls_shape = node("Concat", [n, const("shp_cls_tail", np.array([1, D], np.int64))], "cls_shape", axis=0)
    cls = node("Expand", [const("cls_token", p["cls"]), cls_shape], "cls_b")
    x = node("Concat", [cls, x], "tokens_cls", axis=1)
    x = node("Add", [x, const("pos_embed", p["pos"])], "embed")

    const("shp_qkv", np.array([0, T, 3, HEADS, HD], np.int64))
    const("shp_merge", np.array([0, T, D], np.int64))
    const("att_scale", np.array(HD ** -0.5, np.float32))
    const("sqrt2", np.array(np.sqrt(2.0), np.float32))
    const("one", np.array(1.0, np.float32))
    const("half", np.array(0.5, np.float32))
    for i in range(3):
        const(f"idx{i}", np.array(i, np.int64))

    def linear(x, pre):
        m = node("MatMul", [x, const(pre + "_w", p[pre + "_w"])], pre + "_mm")
        return node("Add", [m, const(pre + "_b", p[pre + "_b"])], pre)

    def layernorm(x, pre):
        return node("LayerNormalization", [x, const(pre + "_g", p[pre + "_g"]), const(pre + "_b", p[pre + "_b"])],
                    pre, axis=-1, epsilon=1e-6)

    outputs = []
    for b in range(DEPTH):
        pre = f"b{b}"
        qkv = linear(layernorm(x, pre + "_ln1"), pre + "_qkv")
        # timm: qkv.reshape(N, T, 3, heads, hd).permute(2, 0, 3, 1, 4) -> q, k, v [N,12,T,16]
        r = node("Reshape", [qkv, "shp_qkv"], pre + "_qkv_r")
        r = node("Transpose", [r], pre + "_qkv_t", perm=[2, 0, 3, 1, 4])
        q, k, v = (node("Gather", [r, f"idx{i}"], f"{pre}_{c}", axis=0) for i, c in enumerate("qkv"))
        s = node("MatMul", [q, node("Transpose", [k], pre + "_kt", perm=[0, 1, 3, 2])], pre + "_qk")
        s = node("Softmax", [node("Mul", [s, "att_scale"], pre + "_qk_s")], pre + "_attn", axis=-1)
        o = node("Transpose", [node("MatMul", [s, v], pre + "_av")], pre + "_av_t", perm=[0, 2, 1, 3])
        o = linear(node("Reshape", [o, "shp_merge"], pre + "_av_m"), pre + "_proj")
        x = node("Add", [x, o], pre + "_res1")
        f = linear(layernorm(x, pre + "_ln2"), pre + "_fc1")
        # exact (erf) GELU: x * 0.5 * (1 + erf(x / sqrt 2))
        e = node("Add", [node("Erf", [node("Div", [f, "sqrt2"], pre + "_gdiv")], pre + "_gerf"), "one"], pre + "_gadd")
        e = node("Mul", [node("Mul", [f, e], pre + "_gmul"), "half"], pre + "_gelu")
        out_name = f"block{b}" if b in OUT_BLOCKS else pre + "_out"
        x = node("Add", [x, linear(e, pre + "_fc2")], out_name)
        if b in OUT_BLOCKS:
            outputs.append(h.make_tensor_value_info(out_name, TP.FLOAT, ["N", T, D]))

    graph = h.make_graph(nodes, graph_name,
                         [h.make_tensor_value_info("image", TP.FLOAT, ["N", 1, IMG, IMG])], outputs,
                         initializer=inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], producer_name=producer)
    model.ir_version = 8  # older runtimes (tract, ort) read ir 8
    h.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def numpy_forward(p, gray):
    """Independent float64 forward pass with the UNFOLDED 3-channel conv on normalised input.
    gray: [N,224,224] raw 0..255. Returns {block: [N,197,192]}."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    n = gray.shape[0]
    x3 = np.repeat(((gray / 255.0 - 0.5) / 0.5)[:, None], 3, axis=1)              # [N,3,224,224]
    patches = x3.reshape(n, 3, GRID, PATCH, GRID, PATCH).transpose(0, 2, 4, 1, 3, 5).reshape(n, GRID * GRID, -1)
    tok = patches @ p["pe_w"].reshape(D, -1).T + p["pe_b"]
    x = np.concatenate([np.broadcast_to(p["cls"], (n, 1, D)), tok], axis=1) + p["pos"]

    def ln(x, pre):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-6) * p[pre + "_g"] + p[pre + "_b"]

    def softmax(s):
        e = np.exp(s - s.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    from scipy.special import erf
    outs = {}
    for b in range(DEPTH):
        pre = f"b{b}"
        qkv = ln(x, pre + "_ln1") @ p[pre + "_qkv_w"] + p[pre + "_qkv_b"]
        q, k, v = qkv.reshape(n, T, 3, HEADS, HD).transpose(2, 0, 3, 1, 4)
        a = softmax(q @ k.transpose(0, 1, 3, 2) * HD ** -0.5) @ v
        x = x + a.transpose(0, 2, 1, 3).reshape(n, T, D) @ p[pre + "_proj_w"] + p[pre + "_proj_b"]
        f = ln(x, pre + "_ln2") @ p[pre + "_fc1_w"] + p[pre + "_fc1_b"]
        f = f * 0.5 * (1 + erf(f / np.sqrt(2)))
        x = x + f @ p[pre + "_fc2_w"] + p[pre + "_fc2_b"]
        if b in OUT_BLOCKS:
            outs[b] = x
    return outs


def check(p, path):
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert all(meta[k] == v for k, v in METADATA.items()), meta
    rng = np.random.default_rng(1)
    worst = 0.0
    for n in (1, 3):
        # speckle-like gray images spanning 0..255 (not a constant: exercises the folded bias and weights)
        gray = np.clip(rng.rayleigh(60, (n, IMG, IMG)) + np.linspace(0, 60, IMG)[None, :, None], 0, 255).round()
        got = sess.run(None, {"image": gray[:, None].astype(np.float32)})
        ref = numpy_forward(p, gray)
        for b, g in zip(OUT_BLOCKS, got):
            assert g.shape == (n, T, D), g.shape
            diff = np.abs(g - ref[b]).max()
            worst = max(worst, diff)
            print(f"N={n} block{b}: max|ort(folded) - numpy(unfolded)| = {diff:.2e}  "
                  f"rms={np.sqrt((ref[b] ** 2).mean()):.3f}")
    # the blocks must actually change the stream (else attention/MLP bugs would be invisible)
    print(f"block10 vs block2 rms change: {np.sqrt(((ref[10] - ref[2]) ** 2).mean()):.3f}")
    assert worst < 1e-4, worst
    print("check OK (worst", f"{worst:.2e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT_PATH)
    ap.add_argument("--check", action="store_true", help="verify N=1/N=3 with onnxruntime vs a NumPy forward")
    args = ap.parse_args()
    p = make_params()
    onnx.save(build_model(p), args.out)
    print("wrote", args.out, os.path.getsize(args.out), "bytes")
    if args.check:
        check(p, args.out)


if __name__ == "__main__":
    sys.exit(main())
