"""The task anchor: a small U-Net fetal-head segmenter trained on HC18 training masks, and Dice."""
import os
import time

import cv2
import numpy as np

from ..data.hc18 import DATA, frames, read_gray

SEG_W, SEG_H = 128, 88


def seg_input(g):
    return cv2.resize(g.astype(np.float32) / 255.0, (SEG_W, SEG_H), interpolation=cv2.INTER_AREA)


def seg_mask(name):
    m = read_gray(os.path.join(DATA, "masks", name)).astype(np.float32) / 255.0
    return cv2.resize(m, (SEG_W, SEG_H), interpolation=cv2.INTER_AREA) > 0.5


def train_segmenter(seed, epochs, log, names=None):
    """names: the training frames (default: all of subjects 000-599)."""
    import torch
    import torch.nn as nn
    torch.manual_seed(seed)
    torch.set_num_threads(2)

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(s, c=(8, 16, 32, 64)):
            super().__init__()
            s.e1, s.e2, s.e3, s.b = block(1, c[0]), block(c[0], c[1]), block(c[1], c[2]), block(c[2], c[3])
            s.u3, s.u2, s.u1 = (nn.ConvTranspose2d(c[3], c[2], 2, 2), nn.ConvTranspose2d(c[2], c[1], 2, 2),
                                nn.ConvTranspose2d(c[1], c[0], 2, 2))
            s.d3, s.d2, s.d1 = block(2 * c[2], c[2]), block(2 * c[1], c[1]), block(2 * c[0], c[0])
            s.out = nn.Conv2d(c[0], 1, 1)
            s.pool = nn.MaxPool2d(2)

        def forward(s, x):
            x = (x - 0.5) / 0.25
            e1 = s.e1(x)
            e2 = s.e2(s.pool(e1))
            e3 = s.e3(s.pool(e2))
            b = s.b(s.pool(e3))
            d3 = s.d3(torch.cat([s.u3(b), e3], 1))
            d2 = s.d2(torch.cat([s.u2(d3), e2], 1))
            d1 = s.d1(torch.cat([s.u1(d2), e1], 1))
            return s.out(d1)

    names = frames("train") if names is None else names
    X = np.stack([seg_input(read_gray(os.path.join(DATA, "images", f))) for f in names])[:, None]
    Y = np.stack([seg_mask(f) for f in names]).astype(np.float32)[:, None]
    X, Y = torch.from_numpy(X), torch.from_numpy(Y)
    net = UNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = epochs * ((len(X) + 15) // 16)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    bce = nn.BCEWithLogitsLoss()
    t0 = time.time()
    for ep in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        tot = 0.0
        net.train()
        for s in range(0, len(X), 16):
            idx = perm[s:s + 16]
            xb, yb = X[idx], Y[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yb = torch.where(flip[:, None, None, None], yb.flip(-1), yb)
            lo = net(xb)
            pr = torch.sigmoid(lo)
            dice = 1 - (2 * (pr * yb).sum((1, 2, 3)) + 1) / (pr.sum((1, 2, 3)) + yb.sum((1, 2, 3)) + 1)
            loss = bce(lo, yb) + dice.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        log(f"  segmenter epoch {ep + 1}/{epochs}: loss {tot / len(X):.4f} ({time.time() - t0:.0f} s)")
    net.eval()

    def predict(gs):
        with torch.no_grad():
            x = torch.from_numpy(np.stack([seg_input(g) for g in gs])[:, None])
            return (net(x)[:, 0] > 0).numpy()

    return predict, len(names), sum(p.numel() for p in net.parameters())


def segment_dices(predict, items, imgs):
    """Dice of every item against its frame's mask, and the clean frames' Dice per frame."""
    masks = {f: seg_mask(f) for f in {it[0] for it in items}}
    dices = {}
    for s in range(0, len(items), 64):
        chunk = items[s:s + 64]
        for it, pr in zip(chunk, predict([imgs[it[3]] for it in chunk])):
            dices[it[3]] = dice(pr, masks[it[0]])
    return dices, {f: dices[p] for f, fam, _, p in items if fam == "clean"}


def dice(p, m):
    inter = np.logical_and(p, m).sum()
    s = p.sum() + m.sum()
    return 1.0 if s == 0 else 2.0 * inter / s


def dice_drops(items, dices, clean_dice):
    """The distorted items, their Dice drops and, per frame, their indices (the 2AFC groups)."""
    dist = [it for it in items if it[1] != "clean"]
    drop = np.array([clean_dice[f] - dices[p] for f, _, _, p in dist])
    groups = {}
    for i, it in enumerate(dist):
        groups.setdefault(it[0], []).append(i)
    return dist, drop, list(groups.values())
