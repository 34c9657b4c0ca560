"""Self-supervised masked-image-modelling (MAE-style) training of the TinyUSFM encoder on
ultrasound: HC18 fetal-head frames (subjects 000-599 only) + simulated B-mode of several organs.

    models/.venv/bin/python -m usq_tools.train.mim                   # the recipe, CPU (about 1 h on 2 cores)
    models/.venv/bin/python -m usq_tools.train.mim --device cuda     # same recipe on a GPU
    models/.venv/bin/python -m usq_tools.export.convert models/runs/mim/encoder.part0.pth \
        models/runs/mim/encoder.part1.pth --out models/tinyusfm.onnx --label "usq-mim-v2"

Recipe (every number is a default below; seeded):
- Input exactly as the metric preprocesses: gray 0..255 -> /255 -> 3 channels -> (x-0.5)/0.5.
  Samples are 224x224 random crops of the native-size gray frames (crops that are >70% black
  background are redrawn up to 4 times) or, with p=0.2, the whole frame area-downscaled to 224x224
  (cv2 INTER_AREA in float32, as uLPIPS does); horizontal flip p=0.5.
- Data: p=0.65 an HC18 frame (--hc18 DIR: NNN_*.png/.webp/.jpg, only subjects 000-599 are read;
  600-699 are held out for evaluation), p=0.35 one of --n-sim simulated B-mode frames
  (usq_reference.simulate_bmode.simulate_random: 6 organ phantoms, linear/sector, random acoustics; seeded).
- MAE: 75% of the 196 patches masked (per-sample random), the encoder (all 12 blocks + final norm)
  sees the cls token + the 49 visible patches; a light decoder (2 blocks, width 128, 4 heads,
  fixed 2-D sin-cos positions, mask token) predicts the 16x16 gray pixels of every patch.
- Loss on masked patches only: MSE against the gray itself in the metric's normalisation
  (brightness and contrast kept, as SimMIM and USFM reconstruct; --target norm is MAE's
  norm_pix_loss, the per-patch normalised target of usq-mim-v1)
  + 0.5 x L1 between the amplitudes of the orthonormal 2-D FFT of predicted and target patches.
- AdamW (betas 0.9/0.95, weight decay 0.05 on matrices), lr 5e-4 with linear warmup over 5% of
  the steps then cosine to 0, gradient-norm clip 1.0, fp32.

Outputs (--out DIR): encoder.part0.pth (patch_embed, cls_token, pos_embed, blocks 0-5) and
encoder.part1.pth (blocks 6-11, norm): the encoder state dict with timm key names, split in two
so each file stays < 16 MiB (usq_tools.export.tinyusfm.load_checkpoint / usq_tools.export.convert join them);
loss.csv (step, loss, mse, fft, lr, elapsed_s, img_per_s); run.json (arguments, timings).
"""
import argparse
import csv
import json
import math
import multiprocessing as mp
import os
import time

import numpy as np
import torch
import torch.nn as nn
from usq_reference import resize_input as whole_frame   # the metric's whole-frame path (uLPIPS's input)

from ..data.hc18 import ANY_FRAME, IMAGES, TRAIN_SUBJECTS, read_gray, subject_frames
from ..export.tinyusfm import DIM, GRID, PATCH, Block, TinyUSFM
from ..paths import MODELS

SIM_SIZES = [(800, 540), (640, 480), (720, 560)]


# ----------------------------------------------------------------------------------------- data
def load_hc18(d):
    files = subject_frames(d, TRAIN_SUBJECTS, ANY_FRAME)
    if not files:
        raise SystemExit(f"no HC18 training frames (NNN_*.png|webp|jpg, subjects 000-599) in {d}")
    subjects = sorted({int(ANY_FRAME.match(f).group(1)) for f in files})
    assert subjects[-1] < 600
    return [read_gray(os.path.join(d, f)) for f in files], subjects


def _sim(i):
    import usq_reference.simulate_bmode as sb
    w, h = SIM_SIZES[i % len(SIM_SIZES)]
    return sb.simulate_random(1_000_000 + i, w, h)


def make_sims(n, workers):
    with mp.get_context("spawn").Pool(workers) as pool:
        out = pool.map(_sim, range(n), chunksize=4)
    return [o[0] for o in out], [o[1] for o in out]


def random_crop(g, rng):
    """A 224x224 float32 crop of a frame of at least that size, at a random place; redrawn up to
    4 times while more than 70 % of it is black background."""
    h, w = g.shape
    for _ in range(5):
        y, x = rng.integers(0, h - 224 + 1), rng.integers(0, w - 224 + 1)
        c = g[y:y + 224, x:x + 224]
        if (c > 8).mean() >= 0.3:
            break
    return c.astype(np.float32)


class Sampler:
    def __init__(self, hc18, sims, rng, p_sim=0.35, p_whole=0.2):
        self.sets = [hc18, sims]
        self.whole = [[whole_frame(g) for g in s] for s in self.sets]
        self.rng, self.p_sim, self.p_whole = rng, p_sim, p_whole

    def crop(self, g):
        return random_crop(g, self.rng)

    def batch(self, n):
        out = np.empty((n, 224, 224), np.float32)
        for j in range(n):
            s = int(self.rng.random() < self.p_sim)
            i = self.rng.integers(len(self.sets[s]))
            img = self.whole[s][i] if self.rng.random() < self.p_whole else self.crop(self.sets[s][i])
            out[j] = img[:, ::-1] if self.rng.random() < 0.5 else img
        return out


# ---------------------------------------------------------------------------------------- model
def sincos_2d(dim, grid=GRID, cls=True):
    """MAE's fixed 2-D sin-cos position table [1 + grid^2, dim] (a zero row for cls)."""
    gy, gx = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

    def emb(pos):
        o = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(o), np.cos(o)], axis=1)

    e = np.concatenate([emb(gy), emb(gx)], axis=1)
    if cls:
        e = np.concatenate([np.zeros((1, dim)), e], axis=0)
    return torch.tensor(e, dtype=torch.float32)[None]


class MAE(nn.Module):
    def __init__(self, dec_dim=128, dec_depth=2, dec_heads=4, mask_ratio=0.75, n_targets=1):
        super().__init__()
        self.encoder = TinyUSFM()
        self.mask_ratio = mask_ratio
        self.dec_embed = nn.Linear(DIM, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer("dec_pos", sincos_2d(dec_dim))
        self.dec_blocks = nn.ModuleList([Block(dec_dim, dec_heads, 4 * dec_dim) for _ in range(dec_depth)])
        self.dec_norm = nn.LayerNorm(dec_dim, eps=1e-6)
        # one gray channel per target (the 3 input channels are equal)
        self.dec_pred = nn.Linear(dec_dim, n_targets * PATCH * PATCH)
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.encoder.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.encoder.patch_embed.proj.bias)
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        with torch.no_grad():  # learned (as in timm), initialised at the sin-cos table
            self.encoder.pos_embed.copy_(sincos_2d(DIM))

    def forward(self, x):
        enc = self.encoder
        tok, cls = enc.embed(x)                                        # [N,196,D], [N,1,D]
        n, L, _ = tok.shape
        keep = int(round(L * (1 - self.mask_ratio)))                   # 49
        order = torch.rand(n, L, device=x.device).argsort(dim=1)
        restore = order.argsort(dim=1)
        vis = torch.gather(tok, 1, order[:, :keep, None].expand(-1, -1, tok.shape[2]))
        h = torch.cat([cls, vis], dim=1)
        for blk in enc.blocks:
            h = blk(h)
        h = self.dec_embed(enc.norm(h))
        full = torch.cat([h[:, 1:], self.mask_token.expand(n, L - keep, -1)], dim=1)
        full = torch.gather(full, 1, restore[:, :, None].expand(-1, -1, full.shape[2]))
        d = torch.cat([h[:, :1], full], dim=1) + self.dec_pos
        for blk in self.dec_blocks:
            d = blk(d)
        pred = self.dec_pred(self.dec_norm(d))[:, 1:]                 # [N,196,256 x targets]
        mask = torch.ones(n, L, device=x.device)
        mask[:, :keep] = 0
        return pred, torch.gather(mask, 1, restore)                    # mask: 1 = masked


def patchify(g):
    """[N,224,224] -> [N,196,256] in token order (row-major over the 14x14 grid)."""
    n = g.shape[0]
    return g.reshape(n, GRID, PATCH, GRID, PATCH).permute(0, 1, 3, 2, 4).reshape(n, GRID * GRID, PATCH * PATCH)


def mim_loss(pred, gray_norm, mask, fft_weight, target):
    """MSE + fft_weight x FFT-amplitude L1 on the masked patches. target "both": the decoder
    predicts the raw and the normalised patch side by side, and the loss is the mean of the two."""
    if target == "both":
        n = PATCH * PATCH
        parts = [mim_loss(pred[..., i * n:(i + 1) * n], gray_norm, mask, fft_weight, t)
                 for i, t in enumerate(("raw", "norm"))]
        return tuple((a + b) / 2 for a, b in zip(*parts))
    t = patchify(gray_norm)
    if target == "norm":  # MAE's norm_pix_loss: each patch's mean and contrast removed
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    m = mask.bool()
    p, t = pred[m], t[m]                                               # masked patches [K,256]
    mse = ((p - t) ** 2).mean()
    amp = lambda a: torch.fft.rfft2(a.reshape(-1, PATCH, PATCH), norm="ortho").abs()
    fft = (amp(p) - amp(t)).abs().mean()
    return mse + fft_weight * fft, mse, fft


# ------------------------------------------------------------------------------------- training
def param_groups(model, wd):
    decay, no = [], []
    for name, p in model.named_parameters():
        (no if p.dim() < 2 or name.endswith(("cls_token", "pos_embed", "mask_token")) else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no, "weight_decay": 0.0}]


def save_encoder(enc, out):
    sd = {k: v.detach().cpu().contiguous() for k, v in enc.state_dict().items()}
    first = lambda k: not k.startswith("norm.") and not (k.startswith("blocks.") and int(k.split(".")[1]) >= 6)
    parts = [{k: v for k, v in sd.items() if first(k)}, {k: v for k, v in sd.items() if not first(k)}]
    paths = []
    for i, part in enumerate(parts):
        paths.append(os.path.join(out, f"encoder.part{i}.pth"))
        torch.save(part, paths[-1])
    return paths


def start_run(a):
    """A training run's set-up from its arguments (out, threads, seed, device): the output
    folder, torch's threads and seed, and (numpy generator, torch device); a CUDA run fails
    at once without a CUDA device."""
    os.makedirs(a.out, exist_ok=True)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.device == "cuda":
        assert torch.cuda.is_available(), "no CUDA device"
        print("device:", torch.cuda.get_device_name(0), flush=True)
    return np.random.default_rng(a.seed), torch.device(a.device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hc18", default=IMAGES)
    ap.add_argument("--out", default=os.path.join(MODELS, "runs", "mim"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=float, default=0.05, help="fraction of steps")
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--fft-weight", type=float, default=0.5)
    ap.add_argument("--target", default="raw", choices=["norm", "raw", "both"],
                    help="reconstruction target: per-patch normalised pixels (MAE norm_pix_loss) or the "
                         "normalised gray itself, brightness and contrast kept (SimMIM/USFM style), or both "
                         "from two decoder heads, the loss their mean")
    ap.add_argument("--n-sim", type=int, default=480)
    ap.add_argument("--p-sim", type=float, default=0.35)
    ap.add_argument("--p-whole", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 16), help="simulation processes")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--time-limit-s", type=float, default=0,
                    help="safety stop: save and exit after this many seconds of training (0: none)")
    a = ap.parse_args()
    t_start = time.time()
    rng, dev = start_run(a)

    hc18, subjects = load_hc18(a.hc18)
    print(f"HC18: {len(hc18)} frames of subjects {subjects[0]:03d}-{subjects[-1]:03d} ({len(subjects)}) "
          f"from {a.hc18}", flush=True)
    t0 = time.time()
    sims, organs = make_sims(a.n_sim, a.workers)
    print(f"simulated {len(sims)} B-mode frames in {time.time() - t0:.1f}s: "
          + ", ".join(f"{o} {organs.count(o)}" for o in sorted(set(organs))), flush=True)
    sampler = Sampler(hc18, sims, rng, a.p_sim, a.p_whole)

    model = MAE(n_targets=2 if a.target == "both" else 1).to(dev)
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    print(f"encoder {n_enc / 1e6:.2f}M params, MAE total {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M; "
          f"steps {a.steps} x batch {a.batch} on {a.device} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)", flush=True)
    opt = torch.optim.AdamW(param_groups(model, a.wd), lr=a.lr, betas=(0.9, 0.95))
    warm = max(1, int(a.warmup * a.steps))
    lr_at = lambda s: a.lr * (s + 1) / warm if s < warm else \
        a.lr * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, a.steps - warm)))

    log = open(os.path.join(a.out, "loss.csv"), "w", newline="")
    w = csv.writer(log)
    w.writerow(["step", "loss", "mse", "fft", "lr", "elapsed_s", "img_per_s"])
    t_train = time.time()
    acc, acc_n, t_last, done = np.zeros(3), 0, t_train, 0
    step_times = []
    for step in range(a.steps):
        ts = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        gray = torch.from_numpy(sampler.batch(a.batch)).to(dev, non_blocking=True)
        gn = (gray / 255.0 - 0.5) / 0.5                               # the metric's normalisation
        x = gn[:, None].expand(-1, 3, -1, -1)                          # replicated to 3 channels
        pred, mask = model(x)
        loss, mse, fft = mim_loss(pred, gn, mask, a.fft_weight, a.target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc += [loss.item(), mse.item(), fft.item()]
        acc_n += 1
        done = step + 1
        step_times.append(time.time() - ts)
        if done % a.log_every == 0 or done == a.steps:
            now = time.time()
            l, m, f = acc / acc_n
            rate = acc_n * a.batch / (now - t_last)
            w.writerow([done, f"{l:.5f}", f"{m:.5f}", f"{f:.5f}", f"{lr_at(step):.3e}", f"{now - t_train:.1f}", f"{rate:.1f}"])
            log.flush()
            print(f"step {done:5d}/{a.steps}  loss {l:.4f}  mse {m:.4f}  fft {f:.4f}  lr {lr_at(step):.2e}  "
                  f"{rate:.1f} img/s  {now - t_train:.0f}s", flush=True)
            acc, acc_n, t_last = np.zeros(3), 0, now
        if a.time_limit_s and time.time() - t_train > a.time_limit_s:
            print(f"time limit reached: stopping at step {done} of {a.steps}", flush=True)
            break
    train_s = time.time() - t_train
    paths = save_encoder(model.encoder, a.out)
    steady = step_times[min(5, len(step_times) - 1):]
    info = dict(vars(a), steps_done=done, train_seconds=round(train_s, 1), total_seconds=round(time.time() - t_start, 1),
                mean_step_s_after_5=round(float(np.mean(steady)), 4), device_name=
                torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu", torch=torch.__version__,
                threads=torch.get_num_threads(), hc18_frames=len(hc18), hc18_subjects=f"{subjects[0]:03d}-{subjects[-1]:03d}",
                sim_organs={o: organs.count(o) for o in sorted(set(organs))}, checkpoint=[os.path.basename(p) for p in paths])
    with open(os.path.join(a.out, "run.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"done: {done} steps in {train_s:.1f}s (mean step {info['mean_step_s_after_5']:.3f}s after 5); "
          f"wrote {', '.join(paths)}", flush=True)


if __name__ == "__main__":
    main()
