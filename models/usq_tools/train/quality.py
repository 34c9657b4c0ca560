"""Quality-aware fine-tuning of the TinyUSFM encoder ("usq-qa"): the features keep what the
shipped encoder sees in clean frames, and learn to move off it, in one direction and by a
measured amount, when the acquisition degrades.

    # usq-qa-v1 (stage 2), from usq-mim-v2
    git show 212032d:models/tinyusfm.onnx > /tmp/usq-mim-v2.onnx
    models/.venv/bin/python -m usq_tools.train.quality --init /tmp/usq-mim-v2.onnx --steps 500    # CPU, ~45 min
    models/.venv/bin/python -m usq_tools.export.convert models/runs/quality/encoder.part0.pth \
        models/runs/quality/encoder.part1.pth --out /tmp/qa.onnx --label usq-qa-v1
    # usq-qa-v2 (stage 3, shipped), from usq-qa-v1 (add --device cuda on a GPU)
    git show f85a311:models/tinyusfm.onnx > /tmp/usq-qa-v1.onnx
    models/.venv/bin/python -m usq_tools.train.quality --init /tmp/usq-qa-v1.onnx --steps 600 \
        --seed 20261207 --severity-weight 0 --margin-weight 1 --out models/runs/quality-v2      # CPU, ~35 min
    #   (v2 was trained with the density's EM in torch, other initial components than
    #   usq_reference.mixture's since 2026-12-08: a rerun is close, not bit-identical)
    # candidates after usq-qa-v2 (models/MODEL_CARD.md), from usq-qa-v2 (the shipped model of 9f82983)
    models/.venv/bin/python -m usq_tools.train.quality --init /tmp/usq-qa-v2.onnx --steps 600 --seed 20261208 \
        --severity-weight 0 --margin-weight 1 --to-floor --out models/runs/quality-v3           # CPU, ~36 min
    models/.venv/bin/python -m usq_tools.export.convert models/runs/quality-v3/encoder.part0.pth \
        models/runs/quality-v3/encoder.part1.pth --out /tmp/qa-v3.onnx --label usq-qa-v3-candidate
    models/.venv/bin/python -m usq_tools.train.quality --init /tmp/qa-v3.onnx --steps 400 --seed 20261209 \
        --severity-weight 0 --margin-weight 1 --to-floor --frame-weight 1 --out models/runs/quality-v4   # ~30 min

Why this objective: NRQ is the log-likelihood of a patch's descriptor (per output layer the mean
of its tokens, concatenated, L2-normalised) under a Gaussian mixture fitted on clean frames.
A darkened or hazy patch can land right on the clean density (dark anechoic regions are clean
too), so NRQ cannot fall with severity unless the features themselves mark degradation. So:

- distillation on clean inputs: the student's residual streams after blocks 2, 4, 6, 10 match
  the frozen starting encoder's (MSE relative to the teacher's energy, per layer), which keeps the
  clean manifold, uLPIPS's token relations and what the starting weights learned;
- severity on descriptors: descriptor z of every clean input and of a degraded copy; a unit
  direction u (learned) and a fixed gain K: K (u . z) + b regresses the degradation's severity
  s in [0, 1] (0 for clean). A fixed K means severity 1 must move z by about 1/K along u on the
  unit sphere, a shift a clean-fitted density cannot absorb, rather than a tiny one a large head
  weight would amplify;
- with --margin-weight (usq-qa-v2 candidates), a margin under NRQ's own density: NRQ's manifold
  (PCA + diagonal Gaussian mixture) fitted once on the teacher's descriptors of --bank clean
  inputs; each degraded descriptor's log-likelihood must fall below its clean source's (the
  teacher's) by severity x twice the clean spread, while each clean descriptor is held on the
  teacher's. A single direction can be absorbed by the mixture where clean patches already spread
  along it (dark anechoic patches do); the margin asks what NRQ asks. (Tried first and dropped,
  2026-12-07: the nearest clean neighbour in a bank instead of the density, with the student's
  recent descriptors or the teacher's, did not learn in 80 steps, and the first bank drifted.)

Degradations are usq_tools.train.degrade (training-only code and parameters; five of the
evaluation's nine families have no counterpart there at all).

Data: HC18 subjects 000-499 (500-599 stay for choosing between candidates, 600-699 for the report),
the training sources of the POCUS lung set (usq_tools.data.pocus_lung), and simulated B-mode of six
organs (usq_reference.simulate_bmode). Inputs as the metric sees them: 224x224 native-resolution
crops (NRQ's patches) or, with p_whole, the whole frame area-downscaled (uLPIPS's input).

Outputs (--out): encoder.part0.pth / encoder.part1.pth (blocks 0-10 with timm names, as
usq_tools.train.mim writes them; usq_tools.export.convert reads them), head.pt (u, b), loss.csv,
run.json. A checkpoint is written every --save-every steps, so a stopped run still leaves weights.
"""
import argparse
import copy
import csv
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from usq_reference import pad_to_min, patch_grid, worst_k
from usq_reference import resize_input as whole_frame
from usq_reference.mixture import diag_gmm, pca

from ..data import pocus_lung
from ..data.hc18 import ANY_FRAME, FIT_BELOW, IMAGES, read_gray, subject_frames
from ..export.contract import OUT_BLOCKS
from ..export.tinyusfm import from_contract_onnx
from ..paths import MODELS
from .degrade import FAMILIES, degrade
from .mim import make_sims, random_crop, save_encoder, start_run

GAIN = 10.0   # K: severity 1 moves the unit descriptor by ~0.1 along u


class Sampler:
    """Clean 224x224 inputs from several frame sets, and their degraded copies."""

    def __init__(self, sets, probs, rng, p_whole):
        self.sets, self.probs, self.rng, self.p_whole = sets, np.asarray(probs) / sum(probs), rng, p_whole

    def crop(self, g):
        """mim's random crop; None for a frame under 224 on a side (it is used whole)."""
        return None if min(g.shape) < 224 else random_crop(g, self.rng)

    def draw(self):
        """(frame, family index, severity) drawn for one degraded input."""
        g = self.sets[self.rng.choice(len(self.sets), p=self.probs)]
        g = g[self.rng.integers(len(g))]
        return g, int(self.rng.integers(len(FAMILIES))), float(self.rng.uniform(0.1, 1.0))

    def pair(self):
        """(clean, degraded, severity, family index) of one input."""
        g, fam, s = self.draw()
        c = None if self.rng.random() < self.p_whole else self.crop(g)
        if c is None:   # the whole frame: degrade at native resolution, then the metric's resize
            gf = g.astype(np.float32)
            clean, deg = whole_frame(gf), whole_frame(degrade(gf, FAMILIES[fam], s, self.rng))
        else:
            clean, deg = c, degrade(c, FAMILIES[fam], s, self.rng)
        if self.rng.random() < 0.5:
            clean, deg = clean[:, ::-1], deg[:, ::-1]
        return clean, deg, s, fam

    def frame(self, max_patches):
        """(clean patches, degraded patches, severity) of one whole frame degraded at native
        resolution: up to max_patches of NRQ's grid (drawn at random, the same positions in both),
        so a loss can aggregate them as NRQ does."""
        g, fam, s = self.draw()
        gf = pad_to_min(g.astype(np.float32))
        deg = degrade(gf, FAMILIES[fam], s, self.rng)
        grid = patch_grid(*gf.shape)
        pick = self.rng.permutation(len(grid))[:max_patches]
        cut = lambda im: np.stack([im[y:y + 224, x:x + 224] for x, y in (grid[i] for i in pick)])
        return cut(gf), cut(deg), s

    def batch(self, n):
        ps = [self.pair() for _ in range(n)]
        x = np.stack([p[0] for p in ps] + [p[1] for p in ps]).astype(np.float32)
        sev = np.array([0.0] * n + [p[2] for p in ps], np.float32)
        return x, sev, [p[3] for p in ps]


def descriptor(layers):
    """NRQ's patch descriptor, batched: per layer the mean of the patch tokens, concatenated,
    L2-normalised ([N, 4 x 192])."""
    return F.normalize(torch.cat([l[:, 1:].mean(1) for l in layers], dim=1), dim=1)


class CleanDensity:
    """NRQ's manifold, differentiable: PCA to `dim` axes and a diagonal Gaussian mixture of `k`
    components (as `usq fit-nrq` fits it: 128 axes, 8 components, variance floor 1e-4), fitted by
    EM (usq_reference.mixture) on the teacher's descriptors of `size` clean inputs; fixed for the
    run (distillation and the hold keep the student's clean descriptors on the teacher's). Also
    `floor`, the clean log-likelihood at `floor_quantile`."""

    @torch.no_grad()
    def __init__(self, teacher, sampler, size, batch, dev, dim=128, k=8, iters=100, reg=1e-4, floor_quantile=0.1):
        z = torch.cat([descriptor(teacher(to_input(torch.from_numpy(sampler.batch(batch)[0][:batch]).to(dev))))
                       for _ in range(-(-size // batch))])[:size]
        zn = z.double().cpu().numpy()
        mean, comps = pca(zn, dim)
        w, mu, var = diag_gmm((zn - mean) @ comps.T, k, 0, iters, reg)
        f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float().to(dev)
        self.mean, self.axes, self.mu, self.var, self.logw = f32(mean), f32(comps.T), f32(mu), f32(var), f32(np.log(w))
        ll = self.loglik(z)
        self.median, self.spread = float(ll.median()), float(ll.std())
        # NRQ averages a frame's worst patches: the clean log-likelihood a degraded patch must get under
        self.floor = float(ll.quantile(floor_quantile))
        # how far apart clean descriptors lie: the hold's unit
        self.spacing = float(torch.cdist(z[:4 * batch], z[4 * batch:]).min(dim=1).values.median())

    def joint(self, y):
        """log(w_k N(y | mu_k, var_k)) per row and component."""
        d = ((y[:, None, :] - self.mu) ** 2 / self.var).sum(2)
        return self.logw - 0.5 * (d + torch.log(2 * np.pi * self.var).sum(1))

    def loglik(self, z):
        return torch.logsumexp(self.joint((z - self.mean) @ self.axes), dim=1)


def distill_loss(s_layers, t_layers):
    """The student's residual streams of the first len(teacher) inputs against the teacher's: MSE
    relative to the teacher's energy, averaged over the layers."""
    n = len(t_layers[0])
    return sum(((s[:n] - t) ** 2).mean() / (t ** 2).mean() for s, t in zip(s_layers, t_layers)) / len(t_layers)


def hold_loss(density, z_clean, z_teacher):
    """The student's clean descriptors on the teacher's: squared distance in units of the clean spacing."""
    return ((z_clean - z_teacher) ** 2).sum(1).mean() / density.spacing ** 2


def margin_loss(density, z, z_teacher, sev, n, to_floor=False):
    """Hinge: each degraded descriptor's (rows n..) log-likelihood under the clean density below
    a target, in units of the margin (twice the clean spread); plus the clean descriptors held on
    the teacher's (squared distance in units of the clean spacing). Also the student's two mean
    log-likelihoods, for the log.

    The target is the teacher's clean source's log-likelihood less severity x margin; with
    to_floor, at severity 1 the target is the clean floor (density.floor, a low quantile of clean
    patches) less the margin, linear in severity from the source's own value at 0. NRQ is the
    mean of a frame's worst patches, so a degraded patch that falls by a margin from a typical
    clean value can still sit above the clean frame's worst patches and leave NRQ where it was
    (usq-qa-v2 on gain drift and shadow). Measured against the student's own clean source instead
    of the teacher's, with a weaker hold, both ran off together (clean log-likelihood 436 -> -4346
    in 30 steps)."""
    ll = density.loglik(z)
    with torch.no_grad():
        ll_ref = density.loglik(z_teacher)
    margin = 2 * density.spread
    drop = margin + (ll_ref - density.floor).clamp_min(0) if to_floor else margin
    hinge = F.relu(ll[n:] - ll_ref + sev[n:] * drop).mean() / margin
    return hinge + hold_loss(density, z[:n], z_teacher), ll[:n].mean().item(), ll[n:].mean().item()


def frame_nrq_loss(density, z_clean_teacher, z_degraded, sev):
    """Hinge on NRQ itself: the mean log-likelihood of the worst 15 % of a degraded frame's
    patches below the teacher's NRQ of the clean frame by severity x margin (twice the clean
    spread), in units of that margin. The per-patch margin can be met by typical patches while the
    frame's worst ones, which are all NRQ reads, get more typical: on validation frames the usq-qa-v3
    candidate's worst clean patches lie at the bottom of the sector and rise as gain drift darkens them."""
    k = worst_k(len(z_degraded))
    with torch.no_grad():
        ref = density.loglik(z_clean_teacher).topk(k, largest=False).values.mean()
    nrq = density.loglik(z_degraded).topk(k, largest=False).values.mean()
    margin = 2 * density.spread
    return F.relu(nrq - ref + sev * margin) / margin, nrq.item() - ref.item()


def to_input(gray):
    g = (gray / 255.0 - 0.5) / 0.5
    return g[:, None].expand(-1, 3, -1, -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True,
                    help="starting (and teacher) contract model; usq-qa-v1 started from usq-mim-v2, the shipped model "
                         "before it: git show 212032d:models/tinyusfm.onnx (sha256 9a1f952b...)")
    ap.add_argument("--hc18", default=IMAGES)
    ap.add_argument("--out", default=os.path.join(MODELS, "runs", "quality"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch", type=int, default=16, help="clean inputs per step (each with a degraded copy)")
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--severity-weight", type=float, default=1.0)
    ap.add_argument("--distill-weight", type=float, default=1.0)
    ap.add_argument("--margin-weight", type=float, default=0.0,
                    help="weight of the clean-manifold margin (0, usq-qa-v1's recipe: off)")
    ap.add_argument("--to-floor", action="store_true",
                    help="the margin's target at severity 1 is a low quantile of clean log-likelihoods "
                         "(--floor-quantile), not the clean source's own value (usq-qa-v2: off)")
    ap.add_argument("--floor-quantile", type=float, default=0.1)
    ap.add_argument("--frame-weight", type=float, default=0.0,
                    help="weight of the hinge on a whole degraded frame's NRQ (frame_nrq_loss; 0: off)")
    ap.add_argument("--frame-patches", type=int, default=12, help="grid patches per frame for --frame-weight")
    ap.add_argument("--bank", type=int, default=2048, help="clean descriptors the margin's density is fitted on")
    ap.add_argument("--n-sim", type=int, default=240)
    ap.add_argument("--p", default="0.5,0.25,0.25", help="draw probabilities of HC18, lung, simulated")
    ap.add_argument("--p-whole", type=float, default=0.25)
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 16))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--time-limit-s", type=float, default=0, help="save and stop after this long (0: none)")
    a = ap.parse_args()
    t_start = time.time()
    rng, dev = start_run(a)

    hc18_files = subject_frames(a.hc18, range(0, FIT_BELOW), ANY_FRAME)
    hc18 = [read_gray(os.path.join(a.hc18, f)) for f in hc18_files]
    lung = [read_gray(p) for p in pocus_lung.frames("train")]
    sims, organs = make_sims(a.n_sim, a.workers)
    print(f"HC18 {len(hc18)} frames (subjects 000-{FIT_BELOW - 1}), lung {len(lung)} frames "
          f"({len(pocus_lung.sources('train'))} training sources), {len(sims)} simulated", flush=True)
    sampler = Sampler([hc18, lung, sims], [float(v) for v in a.p.split(",")], rng, a.p_whole)

    student = from_contract_onnx(a.init).to(dev)
    teacher = copy.deepcopy(student).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    direction = torch.nn.Parameter(F.normalize(torch.randn(len(OUT_BLOCKS) * 192), dim=0).to(dev))
    bias = torch.nn.Parameter(torch.zeros((), device=dev))
    opt = torch.optim.AdamW([{"params": student.parameters(), "weight_decay": 0.0},
                             {"params": [direction, bias], "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95))
    lr_at = lambda s: a.lr * min(1.0, (s + 1) / a.warmup) * 0.5 * (1 + np.cos(np.pi * s / a.steps))

    log = open(os.path.join(a.out, "loss.csv"), "w", newline="")
    w = csv.writer(log)
    w.writerow(["step", "loss", "distill", "severity", "sev_rmse_clean", "sev_rmse_degraded", "lr", "elapsed_s",
                "margin", "loglik_clean", "loglik_degraded", "frame", "frame_nrq_drop"])
    density = None
    if a.margin_weight > 0 or a.frame_weight > 0:
        density = CleanDensity(teacher, sampler, a.bank, a.batch, dev, floor_quantile=a.floor_quantile)
        print(f"clean density on {a.bank} teacher descriptors: log-likelihood median {density.median:.1f}, "
              f"spread {density.spread:.1f}, floor {density.floor:.1f} (quantile {a.floor_quantile})", flush=True)
    t_train, done = time.time(), 0
    acc = np.zeros(10)
    n_acc = 0

    def save():
        paths = save_encoder(student, a.out)
        torch.save({"direction": direction.detach().cpu(), "bias": bias.detach().cpu(), "gain": GAIN},
                   os.path.join(a.out, "head.pt"))
        info = dict(vars(a), steps_done=done, train_seconds=round(time.time() - t_train, 1),
                    total_seconds=round(time.time() - t_start, 1), torch=torch.__version__,
                    threads=torch.get_num_threads(), hc18_frames=len(hc18), lung_frames=len(lung),
                    clean_loglik=density and dict(median=density.median, spread=density.spread, floor=density.floor),
                    sim_organs={o: organs.count(o) for o in sorted(set(organs))}, families=list(FAMILIES),
                    checkpoint=[os.path.basename(p) for p in paths])
        with open(os.path.join(a.out, "run.json"), "w") as f:
            json.dump(info, f, indent=1)
        return paths

    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, sev, _ = sampler.batch(a.batch)
        x, sev = torch.from_numpy(x).to(dev), torch.from_numpy(sev).to(dev)
        inp = to_input(x)
        with torch.no_grad():
            t_layers = teacher(inp[:a.batch])
        s_layers = student(inp)
        distill = distill_loss(s_layers, t_layers)
        z = descriptor(s_layers)
        pred = GAIN * (z @ F.normalize(direction, dim=0)) + bias
        err = (pred - sev) ** 2
        severity = err.mean()
        loss = a.distill_weight * distill + a.severity_weight * severity
        margin, ll_c, ll_d = torch.zeros(()), 0.0, 0.0
        if density is not None:
            margin, ll_c, ll_d = margin_loss(density, z, descriptor(t_layers), sev, a.batch, a.to_floor)
            loss = loss + a.margin_weight * margin
        frame, drop = torch.zeros(()), 0.0
        if a.frame_weight > 0:
            fc, fd, fs = sampler.frame(a.frame_patches)
            fx = to_input(torch.from_numpy(np.concatenate([fc, fd])).to(dev))
            with torch.no_grad():
                ft = teacher(fx[:len(fc)])
            fl = student(fx)
            fz, fzt = descriptor(fl), descriptor(ft)
            f_hinge, drop = frame_nrq_loss(density, fzt, fz[len(fc):], fs)
            frame = f_hinge + hold_loss(density, fz[:len(fc)], fzt)
            loss = loss + a.frame_weight * frame + a.distill_weight * distill_loss(fl, ft)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(student.parameters()) + [direction, bias], 1.0)
        opt.step()
        done = step + 1
        acc += [loss.item(), distill.item(), severity.item(), err[:a.batch].mean().sqrt().item(),
                err[a.batch:].mean().sqrt().item(), margin.item(), ll_c, ll_d, frame.item(), drop]
        n_acc += 1
        if done % a.log_every == 0 or done == a.steps:
            m = acc / n_acc
            el = time.time() - t_train
            w.writerow([done] + [f"{v:.5f}" for v in m[:5]] + [f"{lr_at(step):.3e}", f"{el:.1f}"]
                       + [f"{v:.5f}" for v in m[5:]])
            log.flush()
            print(f"step {done:4d}/{a.steps} loss {m[0]:.4f} distill {m[1]:.4f} severity {m[2]:.4f} "
                  f"(rmse clean {m[3]:.3f}, degraded {m[4]:.3f}) margin {m[5]:.4f} "
                  f"(loglik clean {m[6]:.1f}, degraded {m[7]:.1f}) frame {m[8]:.4f} (NRQ drop {m[9]:.1f}) lr {lr_at(step):.2e} {el:.0f}s", flush=True)
            acc[:], n_acc = 0, 0
        if done % a.save_every == 0:
            save()
        if a.time_limit_s and time.time() - t_train > a.time_limit_s:
            print(f"time limit reached: stopping at step {done} of {a.steps}", flush=True)
            break
    paths = save()
    print(f"done: {done} steps in {time.time() - t_train:.0f}s; wrote {', '.join(paths)}", flush=True)


if __name__ == "__main__":
    main()
