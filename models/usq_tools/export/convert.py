"""Convert a TinyUSFM PyTorch checkpoint (the official TinyUSFM.pth, or this project's own
usq_tools.train.mim output) into a usq *contract* ONNX model (see models/README.md).

    models/.venv/bin/python -m usq_tools.export.convert CKPT [CKPT ...] --out M.onnx [--label TEXT]
    models/.venv/bin/python -m usq_tools.export.convert --self-check

CKPT: a state dict at top level or under "model" (or "state_dict"); several files are joined
(usq_tools.train.mim writes its encoder in two halves). Key prefixes `module.`, `backbone.`, `model.`
are stripped. Names are timm VisionTransformer's. The metric's preprocessing (gray/255, replicate
to 3 channels, (x-0.5)/0.5) is folded into the patch conv (seeded.fold_preprocessing) and
the graph is seeded.build_model's, so the file meets the same contract as the seeded model.

Unlike a non-strict load_state_dict, nothing is skipped silently: every key the contract graph
needs must be present with the right shape and finite values, and every key it does not need is
either listed as unused (block 11, norm.*, head.*, fc_norm.*: the graph ends after block 10) or
is an error. Exit status 2 with a message on any such problem.
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from . import seeded as es   # graph builder, folding, contract metadata
from .contract import D, MLP, OUT_BLOCKS, PATCH, T

PREFIXES = ("module.", "backbone.", "model.")
NEEDED_BLOCKS = range(es.DEPTH)   # 0..10
BLOCK_PARAMS = {  # timm name -> shape
    "norm1.weight": (D,), "norm1.bias": (D,),
    "attn.qkv.weight": (3 * D, D), "attn.qkv.bias": (3 * D,),
    "attn.proj.weight": (D, D), "attn.proj.bias": (D,),
    "norm2.weight": (D,), "norm2.bias": (D,),
    "mlp.fc1.weight": (MLP, D), "mlp.fc1.bias": (MLP,),
    "mlp.fc2.weight": (D, MLP), "mlp.fc2.bias": (D,),
}
TOP_PARAMS = {"patch_embed.proj.weight": (D, 3, PATCH, PATCH), "patch_embed.proj.bias": (D,),
              "cls_token": (1, 1, D), "pos_embed": (1, T, D)}
UNUSED_OK = re.compile(r"^(blocks\.11\.(%s)|(norm|fc_norm)\.(weight|bias)|head\.(weight|bias))$"
                       % "|".join(re.escape(k) for k in BLOCK_PARAMS))
UNUSED_NOTE = "unused by the contract (graph ends after block 10)"


class ConversionError(Exception):
    pass


def needed_keys():
    keys = dict(TOP_PARAMS)
    for i in NEEDED_BLOCKS:
        keys.update({f"blocks.{i}.{k}": s for k, s in BLOCK_PARAMS.items()})
    return keys


def strip_prefixes(sd):
    out, origin = {}, {}
    for k, v in sd.items():
        s = k
        while True:
            for p in PREFIXES:
                if s.startswith(p):
                    s = s[len(p):]
                    break
            else:
                break
        if s in out:
            raise ConversionError(f"keys {origin[s]!r} and {k!r} both become {s!r} after prefix stripping")
        out[s], origin[s] = v, k
    return out


def to_numpy(v, key):
    if hasattr(v, "detach"):
        v = v.detach().cpu().float().numpy()
    elif isinstance(v, np.ndarray):
        v = v.astype(np.float32)
    else:
        raise ConversionError(f"{key}: not a tensor ({type(v).__name__})")
    return v


def check_keys(sd, ignore_prefixes=()):
    """Returns (numpy weights for the needed keys, list of unused keys, list of ignored keys);
    raises ConversionError listing every missing / wrong-shape / non-finite / unknown key."""
    need = needed_keys()
    errors, unused, ignored, w = [], [], [], {}
    missing = [k for k in need if k not in sd]
    if missing:
        errors.append(f"missing {len(missing)} needed key(s): " + ", ".join(missing))
    for k in sorted(sd):
        if k in need:
            a = to_numpy(sd[k], k)
            if tuple(a.shape) != need[k]:
                errors.append(f"{k}: shape {tuple(a.shape)}, expected {need[k]}")
            elif not np.isfinite(a).all():
                errors.append(f"{k}: non-finite values")
            else:
                w[k] = a
        elif UNUSED_OK.match(k):
            unused.append(k)
        elif any(k.startswith(p) for p in ignore_prefixes):
            ignored.append(k)
    unknown = [k for k in sorted(sd) if k not in need and k not in unused and k not in ignored]
    if unknown:
        errors.append(f"{len(unknown)} unknown key(s) (not a TinyUSFM/timm ViT encoder key the contract "
                      "allows): " + ", ".join(unknown[:20]) + (" ..." if len(unknown) > 20 else ""))
    if errors:
        raise ConversionError("\n  ".join(["checkpoint rejected:"] + errors))
    return w, unused, ignored


def to_contract_params(w):
    """timm weights -> export_seeded's unfolded parameter dict (Linear weights as [in, out])."""
    p = {"pe_w": w["patch_embed.proj.weight"], "pe_b": w["patch_embed.proj.bias"],
         "cls": w["cls_token"], "pos": w["pos_embed"]}
    for i in NEEDED_BLOCKS:
        b = f"blocks.{i}."
        p[f"b{i}_ln1_g"], p[f"b{i}_ln1_b"] = w[b + "norm1.weight"], w[b + "norm1.bias"]
        p[f"b{i}_ln2_g"], p[f"b{i}_ln2_b"] = w[b + "norm2.weight"], w[b + "norm2.bias"]
        for name, key in (("qkv", "attn.qkv"), ("proj", "attn.proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")):
            p[f"b{i}_{name}_w"] = np.ascontiguousarray(w[b + key + ".weight"].T)
            p[f"b{i}_{name}_b"] = w[b + key + ".bias"]
    return {k: np.asarray(v, np.float32) for k, v in p.items()}


def provenance(paths, label=None):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    s = f"converted:{'+'.join(os.path.basename(p) for p in paths)} sha256:{h.hexdigest()[:16]}"
    return f"{label}; {s}" if label else s


def convert(paths, out, label=None, ignore_prefixes=(), log=print):
    import onnx
    from .tinyusfm import load_checkpoint
    try:
        sd = load_checkpoint(paths)
    except Exception as e:  # unreadable file, duplicate key across parts, not a dict
        raise ConversionError(f"cannot read checkpoint: {e}") from e
    sd = strip_prefixes(sd)
    w, unused, ignored = check_keys(sd, ignore_prefixes)
    log(f"{len(w)} needed keys found with the expected shapes")
    if unused:
        log(f"{len(unused)} key(s) {UNUSED_NOTE}: " + ", ".join(unused))
    if ignored:
        log(f"{len(ignored)} key(s) ignored on request (--ignore-prefix): " + ", ".join(ignored))
    meta = dict(es.METADATA)
    meta["usq.weights"] = provenance(paths, label)
    model = es.build_model(to_contract_params(w), metadata=meta, graph_name="tinyusfm",
                           producer="usq-convert_tinyusfm")
    onnx.save(model, out)
    log(f"wrote {out} ({os.path.getsize(out)} bytes), usq.weights = {meta['usq.weights']}")
    return meta


def check_contract(path, expect_weights=None):
    """The file's I/O and metadata are the contract's."""
    import onnx
    m = onnx.load(path)
    ins = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in m.graph.input]
    outs = [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in m.graph.output]
    assert ins == [("image", ["N", 1, 224, 224])], ins
    assert outs == [(f"block{b}", ["N", T, D]) for b in OUT_BLOCKS], outs
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["usq.layers"] == "2,4,6,10" and meta["usq.version"] == "1", meta
    assert expect_weights is None or meta["usq.weights"] == expect_weights, meta
    assert m.opset_import[0].version == 17 and m.ir_version == 8
    return meta


def compare_with_torch(onnx_path, model, ns=(1, 2), seed=0, limit=1e-4):
    """Max abs difference of every output between onnxruntime (folded 1-channel conv, raw gray)
    and the PyTorch definition (3-channel normalised input), for batch sizes ns."""
    import onnxruntime as ort
    import torch
    from .tinyusfm import gray_to_input
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in ns:
        gray = np.clip(rng.rayleigh(60, (n, 224, 224)) + np.linspace(0, 80, 224)[None, :, None], 0, 255).round()
        got = sess.run(None, {"image": gray[:, None].astype(np.float32)})
        with torch.no_grad():
            ref = [r.numpy() for r in model.eval()(gray_to_input(gray.astype(np.float32)))]
        for b, g, r in zip(OUT_BLOCKS, got, ref):
            assert g.shape == (n, T, D) and np.isfinite(g).all(), (g.shape, b)
            diff = float(np.abs(g - r).max())
            worst = max(worst, diff)
            print(f"  N={n} block{b}: max|onnx - torch| = {diff:.2e}   rms = {np.sqrt((r ** 2).mean()):.3f}")
            assert diff <= limit, f"block{b}: {diff} > {limit}"
    return worst


def self_check():
    import torch
    from .tinyusfm import TinyUSFM
    torch.manual_seed(20261128)
    model = TinyUSFM()
    with torch.no_grad():  # non-trivial values everywhere (LayerNorm affine, cls, pos, biases)
        for name, prm in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                prm.copy_(1 + 0.1 * torch.randn_like(prm))
            elif prm.dim() == 1 or name in ("cls_token", "pos_embed"):
                prm.copy_(0.05 * torch.randn_like(prm))
    sd = {"module." + k: v.clone() for k, v in model.state_dict().items()}
    sd["module.head.weight"], sd["module.head.bias"] = torch.randn(1000, D), torch.zeros(1000)
    me = [sys.executable, "-m", __spec__.name]   # this converter, as a command
    with tempfile.TemporaryDirectory() as tmp:
        ck, out = os.path.join(tmp, "random_official_names.pth"), os.path.join(tmp, "m.onnx")
        torch.save({"model": sd}, ck)
        print("1. random checkpoint with official key names ('module.' prefix, under 'model'):")
        meta = convert([ck], out, log=lambda s: print("  " + s))
        check_contract(out, meta["usq.weights"])
        worst = compare_with_torch(out, model)
        print(f"  OK: every block output within 1e-4 (worst {worst:.2e}); contract I/O and metadata OK")

        def expect_failure(what, sd_bad, needle):
            bad = os.path.join(tmp, "bad.pth")
            torch.save(sd_bad, bad)
            r = subprocess.run(me + [bad, "--out", os.path.join(tmp, "bad.onnx")], capture_output=True, text=True)
            msg = (r.stdout + r.stderr).strip()
            print(f"{what}: exit {r.returncode}\n    " + msg.replace("\n", "\n    "))
            assert r.returncode != 0 and needle in msg and not os.path.exists(os.path.join(tmp, "bad.onnx")), msg

        unknown = dict(sd)
        unknown["module.blocks.3.attn.q_norm.weight"] = torch.ones(16)
        expect_failure("2. an unknown key", unknown, "unknown key")
        missing = {k: v for k, v in sd.items() if k != "module.blocks.5.mlp.fc2.bias"}
        expect_failure("3. a missing key", missing, "missing 1 needed key(s): blocks.5.mlp.fc2.bias")
        shape = dict(sd)
        shape["module.pos_embed"] = torch.zeros(1, 50, D)
        expect_failure("4. a wrong shape", shape, "pos_embed: shape")
    print("self-check OK")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", nargs="*", help="checkpoint file(s); several are joined (disjoint keys)")
    ap.add_argument("--out", help="output ONNX path")
    ap.add_argument("--label", help="text put before the provenance in usq.weights")
    ap.add_argument("--ignore-prefix", action="append", default=[],
                    help="accept (and list) keys starting with this, after prefix stripping, e.g. decoder_")
    ap.add_argument("--self-check", action="store_true",
                    help="convert a random checkpoint and compare with the PyTorch definition; test rejections")
    a = ap.parse_args()
    if a.self_check:
        return self_check()
    if not a.ckpt or not a.out:
        ap.error("CKPT and --out are required (or --self-check)")
    try:
        convert(a.ckpt, a.out, a.label, tuple(a.ignore_prefix))
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
