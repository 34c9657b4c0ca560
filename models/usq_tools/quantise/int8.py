"""Make the int8 contract model models/tinyusfm-int8.onnx from the fp32 one.

    models/.venv/bin/python -m usq_tools.quantise.int8 [--model models/tinyusfm.onnx]
        [--out models/tinyusfm-int8.onnx] [--calib-crops 48] [--calib-frames 16] [--seed 20261129]

Every Linear layer of the encoder (qkv, proj, fc1, fc2: a MatMul with a constant [K,N] weight
followed by the bias Add) becomes static int8 with zero points 0 in the integer product:

    xq  = Cast<int8>(Clip(Sub(Add(Mul(x, 1/sx), 1.5*2^23 - k), 1.5*2^23), -127, 127))
          (the Add/Sub of 1.5*2^23 rounds to nearest, ties to even, in float32 maths)
    acc = MatMulInteger(xq, Wq)            Wq int8 [K,N]
    y   = Add(Mul(Cast<float>(acc), sx*sw), bias + k*sx*sw*colsum(Wq))

- activations: one scale per tensor from the calibration batch's signed range [lo, hi] (the
  0.001 % and 99.999 % percentiles): sx = (hi - lo) / 254 and an integer shift
  k = round((hi + lo) / (2 sx)) that centres the range, so xq = round(x/sx) - k; the shift
  goes into the rounding constant and the bias (exact: the quantised weights' column sums).
  A one-sided input (GELU's, into fc2) thus gets all 255 levels instead of half. `--symmetric`
  gives the earlier form (k = 0, sx = max|x| / 127);
- weights: one scale per output column, sw[n] = max_k |W[k,n]| / 127 (the float Mul after
  MatMulInteger carries the per-column vector; QLinearMatMul would not load it in tract 0.23.9).

Chosen on distorted *training* frames (usq_tools.quantise.fidelity, 12 frames of subjects 000-599 x
37 versions; NRQ int8 - fp32 standard deviation, with the earlier 4-patch default manifold): symmetric max 1.34, symmetric 99.99 % 1.14,
centred max 1.10, centred 99.99 % 1.05, centred 99.999 % 0.99 (shipped), the same with 4x the
calibration 1.07, with fc2 kept fp32 0.95 (slower; not shipped).

This "float-op quantise + MatMulInteger" form is the one measured to load and run in tract
0.23.9 (tract's QuantizeLinear is a slow scalar loop). Everything else (patch conv, LayerNorm,
attention matmuls, softmax, GELU, residuals) stays float32; input, outputs and metadata are the
contract's, with an "int8 (...)" note appended to usq.weights.

Calibration: 64 patches of HC18 *training* frames (subjects 000-599, never 600-699): by default
48 native-resolution 224x224 crops on the NRQ patch grid (what NRQ feeds the model) and 16 whole
frames area-resized to 224x224 (what uLPIPS feeds it), picked with numpy default_rng(seed).
The script ends with a self-check in onnxruntime (fp32 vs int8 on 16 other training patches).
"""
import argparse
import os
import re

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from usq_reference import grid_starts, resize_input   # the metric's NRQ patch grid and whole-frame input

from ..data import hc18
from ..paths import MODELS

HC18 = os.environ.get("USQ_HC18", hc18.IMAGES)
# The quantised model's provenance strings (its producer_name and the note appended to usq.weights)
# still name quantize_int8.py, the script this module was, so a rerun rewrites the shipped file as it is.
PRODUCER = "usq quantize_int8.py"
LINEAR = re.compile(r"^b\d+_(qkv|proj|fc1|fc2)_w$")
MAGIC = np.float32(12582912.0)   # 1.5 * 2^23


def training_frames():
    fs = hc18.subject_frames(HC18, hc18.TRAIN_SUBJECTS)
    if not fs:
        raise SystemExit(f"no HC18 training frames in {HC18}")
    return [os.path.join(HC18, f) for f in fs]


def sample_patches(files, rng, n_crops, n_frames):
    """n_crops native grid crops and n_frames whole-frame resizes, from distinct frames."""
    idx = rng.permutation(len(files))[: n_crops + n_frames]
    out = []
    for j, i in enumerate(idx):
        g = hc18.read_gray(files[i])
        if j < n_crops:
            ys, xs = grid_starts(g.shape[0]), grid_starts(g.shape[1])
            y, x = ys[rng.integers(len(ys))], xs[rng.integers(len(xs))]
            out.append(g[y:y + 224, x:x + 224].astype(np.float32))
        else:
            out.append(resize_input(g))
    return np.stack(out)[:, None], [files[i] for i in idx]


def session(model, threads=2):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model,
                                so, providers=["CPUExecutionProvider"])


def find_linears(m):
    """[(matmul node, add node, weight name, bias name)] for every constant-weight Linear."""
    inits = {t.name for t in m.graph.initializer}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in m.graph.node:
        if n.op_type == "MatMul" and n.input[1] in inits and LINEAR.match(n.input[1]):
            cs = consumers.get(n.output[0], [])
            assert len(cs) == 1 and cs[0].op_type == "Add", n.name
            add = cs[0]
            bias = [i for i in add.input if i != n.output[0]][0]
            assert bias in inits, add.name
            out.append((n, add, n.input[1], bias))
    return out


def copy_model(m):
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


def calibrate(m, lins, x, pct=100.0):
    """per Linear input: max |activation| over the batch x (pct < 100: that percentile of |x|),
    the per-channel max |x_k| (for smoothing) and the signed range (lo, hi) (percentiles
    100 - pct and pct when pct < 100)."""
    mc = copy_model(m)
    names = sorted({mm.input[0] for mm, _, _, _ in lins})
    for nm in names:
        mc.graph.output.append(helper.make_tensor_value_info(nm, TensorProto.FLOAT, None))
    sess = session(mc)
    acts = {nm: [] for nm in names}
    for s in range(0, len(x), 8):
        res = sess.run(names, {"image": x[s:s + 8]})
        for nm, r in zip(names, res):
            acts[nm].append(r.reshape(-1, r.shape[-1]))
    amax, cmax, lohi = {}, {}, {}
    for nm in names:
        signed = np.concatenate(acts[nm])
        a = np.abs(signed)
        cmax[nm] = a.max(0)
        amax[nm] = float(a.max()) if pct >= 100 else float(np.percentile(a, pct))
        lohi[nm] = ((float(signed.min()), float(signed.max())) if pct >= 100 else
                    (float(np.percentile(signed, 100 - pct)), float(np.percentile(signed, pct))))
    return amax, cmax, lohi


def smooth(m, lins, cmax, alpha):
    """SmoothQuant-style channel rescaling, exact in float: for an input channel k of a Linear,
    x_k -> x_k / s_k and W[k,:] -> W[k,:] * s_k with s_k = max|x_k|^alpha / max|W[k,:]|^(1-alpha).
    The 1/s_k is folded into what makes x: the LayerNorm affine before qkv and fc1, the v columns of
    qkv (and their bias) before proj. fc2 (input: GELU) is left alone."""
    inits = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    arr = lambda nm: numpy_helper.to_array(inits[nm]).astype(np.float32)

    def put(nm, a):
        inits[nm].CopyFrom(numpy_helper.from_array(a.astype(np.float32), nm))

    for mm, _, wname, _ in lins:
        kind = LINEAR.match(wname).group(1)
        if kind == "fc2":
            continue
        W = arr(wname)
        sc = np.power(np.maximum(cmax[mm.input[0]], 1e-5), alpha) / np.power(np.maximum(np.abs(W).max(1), 1e-5), 1 - alpha)
        sc = np.clip(sc, 1e-2, 1e2).astype(np.float32)
        if kind in ("qkv", "fc1"):
            ln = producer[mm.input[0]]
            assert ln.op_type == "LayerNormalization", ln.name
            put(ln.input[1], arr(ln.input[1]) / sc)
            put(ln.input[2], arr(ln.input[2]) / sc)
        else:   # proj: its input channels are the v channels of the same block's qkv
            blk = wname.split("_")[0]
            qw, qb = blk + "_qkv_w", blk + "_qkv_b"
            Wq, bq = arr(qw), arr(qb)
            D = Wq.shape[0]
            Wq[:, 2 * D:] /= sc[None, :]
            bq[2 * D:] /= sc
            put(qw, Wq)
            put(qb, bq)
        put(wname, W * sc[:, None])
    return m


def quantize(m, lins, amax, note, keep_fp32=None, lohi=None):
    """lohi (asymmetric ranges): per Linear input, quantise x - k*sx instead of x, with sx =
    (hi - lo) / 254 and the integer k = round((hi + lo) / (2 sx)) centring [lo, hi] on zero,
    so a one-sided input (GELU's, into fc2) gets the whole int8 range. The shift is folded
    into the two constants of the rounding (Add magic - k, Sub magic: still one fused
    quantisation in tract) and into the bias: x W = (x - k sx) W + k sx colsum(W), with the
    quantised W's column sums so the correction is exact in the integer domain.
    m itself is left unchanged."""
    m = copy_model(m)
    inits = {t.name: t for t in m.graph.initializer}
    new_inits = [numpy_helper.from_array(np.array(MAGIC), "q_magic"),
                 numpy_helper.from_array(np.array(-127.0, np.float32), "q_min"),
                 numpy_helper.from_array(np.array(127.0, np.float32), "q_max")]
    replace = {}
    drop = set()
    for mm, add, wname, bname in lins:
        if keep_fp32 and re.search(keep_fp32, wname):
            continue
        W = numpy_helper.to_array(inits[wname]).astype(np.float32)   # [K, N]
        x = mm.input[0]
        p = wname[:-2]                                              # e.g. b3_fc1
        sw = (np.abs(W).max(0) / 127.0).astype(np.float32)
        sw[sw == 0] = np.float32(1.0)
        Wq = np.clip(np.rint(W / sw[None, :]), -127, 127).astype(np.int8)
        if lohi is None:
            sx, k = np.float32(amax[x] / 127.0), 0
        else:
            lo, hi = lohi[x]
            sx = np.float32((hi - lo) / 254.0)
            k = int(np.rint((hi + lo) / (2.0 * sx)))
        deq = (sx * sw).astype(np.float32)
        magic = "q_magic"
        if k:
            magic = p + "_magic_k"
            new_inits.append(numpy_helper.from_array(np.array(MAGIC - np.float32(k)), magic))
            b = numpy_helper.to_array(inits[bname]).astype(np.float64)
            b = b + k * deq.astype(np.float64) * Wq.astype(np.int64).sum(0)
            inits[bname].CopyFrom(numpy_helper.from_array(b.astype(np.float32), bname))
        new_inits += [numpy_helper.from_array(np.array(np.float32(1.0) / sx), p + "_inv_sx"),
                      numpy_helper.from_array(Wq, p + "_wq"),
                      numpy_helper.from_array(deq, p + "_deq")]
        drop.add(wname)
        y = mm.output[0]
        nodes = [
            helper.make_node("Mul", [x, p + "_inv_sx"], [p + "_xs"], name=p + "_xs"),
            helper.make_node("Add", [p + "_xs", magic], [p + "_xr1"], name=p + "_xr1"),
            helper.make_node("Sub", [p + "_xr1", "q_magic"], [p + "_xr2"], name=p + "_xr2"),
            helper.make_node("Clip", [p + "_xr2", "q_min", "q_max"], [p + "_xc"], name=p + "_xc"),
            helper.make_node("Cast", [p + "_xc"], [p + "_xq"], name=p + "_xq", to=TensorProto.INT8),
            helper.make_node("MatMulInteger", [p + "_xq", p + "_wq"], [p + "_acc"], name=p + "_acc"),
            helper.make_node("Cast", [p + "_acc"], [p + "_accf"], name=p + "_accf", to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "_accf", p + "_deq"], [y], name=y),
        ]
        replace[mm.name or y] = nodes
    graph_nodes = []
    for n in m.graph.node:
        key = n.name or n.output[0]
        graph_nodes.extend(replace.get(key, [n]))
    keep = [t for t in m.graph.initializer if t.name not in drop]
    g = helper.make_graph(graph_nodes, m.graph.name, list(m.graph.input), list(m.graph.output),
                          initializer=keep + new_inits)
    q = helper.make_model(g, opset_imports=list(m.opset_import), producer_name=PRODUCER)
    q.ir_version = m.ir_version
    for kv in m.metadata_props:
        # "; int8 (": src/weighting.rs (QUANTISED_NOTE) reads the float label back from it
        v = kv.value + "; " + note if kv.key == "usq.weights" else kv.value
        q.metadata_props.append(onnx.StringStringEntryProto(key=kv.key, value=v))
    onnx.checker.check_model(q)
    return q


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(MODELS, "tinyusfm.onnx"))
    ap.add_argument("--out", default=os.path.join(MODELS, "tinyusfm-int8.onnx"))
    ap.add_argument("--calib-crops", type=int, default=48)
    ap.add_argument("--calib-frames", type=int, default=16)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--act-percentile", type=float, default=99.999,
                    help="activation range percentile (100 = min/max; the shipped model: 99.999)")
    ap.add_argument("--smooth", type=float, default=None,
                    help="SmoothQuant alpha for qkv/proj/fc1 (off in the shipped model)")
    ap.add_argument("--keep-fp32", default=None, help="regex of Linear weights left in fp32 (none shipped)")
    ap.add_argument("--symmetric", action="store_true",
                    help="no centring shift: sx = max|x| / 127 (the shipped model centres)")
    a = ap.parse_args()

    m = onnx.load(a.model)
    lins = find_linears(m)
    print(f"{len(lins)} Linear layers to quantise")
    rng = np.random.default_rng(a.seed)
    files = training_frames()
    x, used = sample_patches(files, rng, a.calib_crops, a.calib_frames)
    print(f"calibration: {len(x)} patches from {len(used)} HC18 training frames (subjects 000-599)")
    amax, cmax, lohi = calibrate(m, lins, x, a.act_percentile)
    if a.smooth is not None:
        m = smooth(m, lins, cmax, a.smooth)
        lins = find_linears(m)
        amax, _, lohi = calibrate(m, lins, x, a.act_percentile)
    form = "symmetric" if a.symmetric else "centred (integer shift folded into the bias)"
    note = (f"int8 (quantize_int8.py: Linear qkv/proj/fc1/fc2 as MatMulInteger, static {form} "
            f"per-tensor activations, per-column weights, zero points 0; calibrated on "
            f"{len(x)} HC18 000-599 patches, percentile {a.act_percentile}, seed {a.seed})")
    q = quantize(m, lins, amax, note, a.keep_fp32, None if a.symmetric else lohi)
    onnx.save(q, a.out)
    print(f"wrote {a.out} ({os.path.getsize(a.out):,} bytes)")

    # self-check in onnxruntime on 16 other training patches (not the calibration ones)
    rest = [f for f in files if f not in set(used)]
    xc, _ = sample_patches(rest, np.random.default_rng(a.seed + 1), 12, 4)
    rf, rq = session(m).run(None, {"image": xc}), session(a.out).run(None, {"image": xc})
    for nm, f, qv in zip([o.name for o in m.graph.output], rf, rq):
        f, qv = f[:, 1:], qv[:, 1:]
        rel = np.linalg.norm(qv - f) / np.linalg.norm(f)
        zf = f.mean(1)
        zq = qv.mean(1)
        cos = (zf * zq).sum(1) / np.linalg.norm(zf, axis=1) / np.linalg.norm(zq, axis=1)
        print(f"  {nm}: relative L2 error {rel:.4f}, token-mean cosine min {cos.min():.6f}")


if __name__ == "__main__":
    main()
