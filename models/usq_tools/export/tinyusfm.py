"""TinyUSFM encoder in PyTorch: the timm VisionTransformer layout that the official TinyUSFM
checkpoint uses (ViT-Tiny width, 12 heads of 16), written out here so no timm is needed.

Parameter names and shapes are timm's, so a state dict loads 1:1:
  patch_embed.proj  Conv2d(3, 192, 16, stride 16)      cls_token [1,1,192]   pos_embed [1,197,192]
  blocks.{0..11}.norm1 / attn.qkv (192->576, bias) / attn.proj / norm2 / mlp.fc1 (192->768) / mlp.fc2
  norm (final LayerNorm)                               every LayerNorm has eps 1e-6, GELU is exact (erf)

`forward(x)` takes the *normalised* 3-channel input ((gray/255 - 0.5)/0.5 replicated) and returns
the residual stream after blocks 2, 4, 6, 10 (0-based; token 0 is cls), as the metric reads it.
`gray_to_input` does that preprocessing from raw gray 0..255.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .contract import D as DIM, GRID, HEADS, MLP, OUT_BLOCKS, PATCH

DEPTH = 12   # the whole ViT; the contract graph keeps blocks 0-10


class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, DIM, PATCH, stride=PATCH)

    def forward(self, x):                                   # [N,3,224,224] -> [N,196,192]
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim=DIM, heads=HEADS):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(n, t, c))


class Mlp(nn.Module):
    def __init__(self, dim=DIM, hidden=MLP):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="none"))


class Block(nn.Module):
    def __init__(self, dim=DIM, heads=HEADS, hidden=MLP):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyUSFM(nn.Module):
    def __init__(self, depth=DEPTH):
        super().__init__()
        self.patch_embed = PatchEmbed()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, GRID * GRID + 1, DIM))
        self.blocks = nn.ModuleList([Block() for _ in range(depth)])
        self.norm = nn.LayerNorm(DIM, eps=1e-6)

    def embed(self, x):
        """Patch tokens + pos_embed [N,196,192] and the cls token + its pos_embed [N,1,192]."""
        tok = self.patch_embed(x) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return tok, cls

    def forward(self, x, out_blocks=OUT_BLOCKS):
        """Residual stream after each block in out_blocks, as a list of [N,197,192]."""
        tok, cls = self.embed(x)
        x, outs = torch.cat([cls, tok], dim=1), []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in out_blocks:
                outs.append(x)
            if i >= max(out_blocks):
                break
        return outs


def gray_to_input(gray):
    """Raw gray [N,224,224] or [N,1,224,224] (0..255) -> the metric's normalised 3-channel input."""
    g = torch.as_tensor(gray, dtype=torch.float32)
    if g.dim() == 3:
        g = g[:, None]
    return ((g / 255.0 - 0.5) / 0.5).expand(-1, 3, -1, -1)


def load_checkpoint(paths):
    """Join one or more checkpoint files (e.g. the two halves usq_tools.train.mim writes) into one state
    dict. A state dict at top level or under "model"/"state_dict"; a key in two files is an error."""
    if isinstance(paths, str):
        paths = [paths]
    sd = {}
    for p in paths:
        obj = torch.load(p, map_location="cpu", weights_only=False)
        if isinstance(obj, dict):
            for k in ("model", "state_dict"):
                if k in obj and isinstance(obj[k], dict):
                    obj = obj[k]
                    break
        if not isinstance(obj, dict):
            raise ValueError(f"{p}: not a state dict (got {type(obj).__name__})")
        dup = sorted(set(sd) & set(obj))
        if dup:
            raise ValueError(f"{p}: keys already in an earlier file: {dup[:5]}")
        sd.update(obj)
    return sd


def from_contract_onnx(path):
    """A TinyUSFM (blocks 0-10, the ones the contract graph keeps) holding the weights of a usq
    contract ONNX model, so training can start from a shipped model. The graph's patch conv has
    the preprocessing folded in (seeded.fold_preprocessing: one gray channel, g/127.5 - 1); it is
    unfolded into an equivalent 3-channel conv on the normalised input: each channel gets a third
    of the folded kernel x 127.5, and the bias gets back the kernel's sum."""
    import onnx
    from onnx import numpy_helper
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    model = TinyUSFM(depth=max(OUT_BLOCKS) + 1)
    w1 = init["patch_w"].astype("float64")
    w3 = (w1 * 127.5 / 3.0).repeat(3, axis=1)
    b3 = init["patch_b"].astype("float64") + w3.sum(axis=(1, 2, 3))
    sd = {"patch_embed.proj.weight": w3, "patch_embed.proj.bias": b3,
          "cls_token": init["cls_token"], "pos_embed": init["pos_embed"]}
    for i in range(max(OUT_BLOCKS) + 1):
        b, pre = f"blocks.{i}.", f"b{i}_"
        sd[b + "norm1.weight"], sd[b + "norm1.bias"] = init[pre + "ln1_g"], init[pre + "ln1_b"]
        sd[b + "norm2.weight"], sd[b + "norm2.bias"] = init[pre + "ln2_g"], init[pre + "ln2_b"]
        for name, key in (("qkv", "attn.qkv"), ("proj", "attn.proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")):
            sd[b + key + ".weight"] = init[pre + name + "_w"].T     # the graph stores [in, out]
            sd[b + key + ".bias"] = init[pre + name + "_b"]
    sd["norm.weight"], sd["norm.bias"] = model.norm.weight.detach().numpy(), model.norm.bias.detach().numpy()
    model.load_state_dict({k: torch.tensor(v.copy() if hasattr(v, "copy") else v, dtype=torch.float32)
                           for k, v in sd.items()}, strict=True)
    return model
