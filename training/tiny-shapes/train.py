"""Train tiny-shapes (v-prediction, cosine DDPM schedule, 10% empty-prompt dropout, EMA weights).

Resumable: a checkpoint is written every --ckpt-every steps and picked up on restart.
Run with Debian's system Python: /usr/bin/python3 train.py --steps 6000
"""
import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import data
from model import MAX_TOKENS, TextEncoder, UNet
from schedule import NUM_TRAIN_TIMESTEPS, alphas_cumprod
from vocab import PAD_ID, VOCAB, encode


class Models(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.text = TextEncoder(len(VOCAB))
        self.unet = UNet()


def lr_at(step, total, peak, warmup=300, floor=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def v_loss(net, imgs, caps, rng, gen, ab):
    """The training loss of one batch: v-prediction MSE at random timesteps, 10 % of captions dropped to empty.

    Draws from `rng` (the dropout, then the timesteps) and `gen` (the noise) in a fixed order, so a run resumed
    from a checkpoint sees the same batches as one that never stopped.
    """
    n = len(caps)
    drop = rng.random(n) < 0.1
    ids = torch.tensor([encode("" if d else c, MAX_TOKENS) for c, d in zip(caps, drop)])
    x0 = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    t = torch.from_numpy(rng.integers(0, NUM_TRAIN_TIMESTEPS, n))
    eps = torch.randn(x0.shape, generator=gen)
    a = ab[t].sqrt()[:, None, None, None]
    s = (1 - ab[t]).sqrt()[:, None, None, None]
    xt = a * x0 + s * eps
    v = a * eps - s * x0
    return F.mse_loss(net.unet(xt, t.float(), net.text(ids)), v)


def update(net, ema, opt, loss, decay):
    """One optimizer step on `loss` (gradients clipped to norm 1), then the EMA weights move towards the new ones."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        for pe, pn in zip(ema.parameters(), net.parameters()):
            pe.mul_(decay).add_(pn, alpha=1 - decay)


def save_checkpoint(path, net, ema, opt, step, loss):
    """Writes the checkpoint beside `path` and renames it into place, so a stop mid-write keeps the last one."""
    tmp = path + ".tmp"
    torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step, "loss": loss}, tmp)
    os.replace(tmp, path)


def train_loop(net, ema, opt, step, args, lr_of, decay_of, shape_p=None):
    """Trains from `step` to `args.steps` (with `args.batch`, `.seed`, `.ckpt`, `.ckpt_every`): each step's batch from
    a random stream seeded by (seed, step), so a resumed run sees the same data as an uninterrupted one; `lr_of(step)`
    is a step's learning rate, `decay_of(steps done)` the EMA decay after it; `shape_p` as in `data.batch`.
    """
    ab = alphas_cumprod()
    t0 = time.time()
    run_loss = None
    while step < args.steps:
        rng = np.random.default_rng([args.seed, step])
        imgs, caps = data.batch(rng, args.batch, shape_p)
        for g in opt.param_groups:
            g["lr"] = lr_of(step)
        loss = v_loss(net, imgs, caps, rng, torch.Generator().manual_seed(args.seed * 1_000_003 + step), ab)
        step += 1
        update(net, ema, opt, loss, decay_of(step))
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % 25 == 0:
            print(f"step {step} loss {run_loss:.4f} lr {lr_of(step):.2e} elapsed {time.time() - t0:.0f}s", flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            save_checkpoint(args.ckpt, net, ema, opt, step, run_loss)
    print(f"done: step {step} loss {run_loss:.4f} in {time.time() - t0:.0f}s", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt", default="ckpt.pt")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)  # Debian's torch uses one core unless told
    torch.manual_seed(args.seed)
    net = Models()
    ema = Models()
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    step = 0
    if os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt)
        net.load_state_dict(ck["net"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        print(f"resumed at step {step}", flush=True)
    print(f"params: unet {sum(p.numel() for p in net.unet.parameters())}, text {sum(p.numel() for p in net.text.parameters())}", flush=True)

    train_loop(net, ema, opt, step, args, lambda s: lr_at(s, args.steps, args.lr), lambda s: min(args.ema, (1 + s) / (10 + s)))

if __name__ == "__main__":
    main()
