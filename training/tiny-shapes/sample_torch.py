"""Sample tiny-shapes in PyTorch eager, the same way the TypeScript pipeline does, and time it.

The PyTorch side of bench/pipeline.ts: 20-step DDIM ("trailing" spacing, v-prediction, eta 0, the model's
scheduler_config.json) with classifier-free guidance (one UNet call on the stacked [uncond; cond] rows per
step), text encoder once per batch, identity decode to uint8 — the work OnnxDiffusionPipeline.generate does.

    /usr/bin/python3 sample_torch.py [CKPT] [--threads 2] [--batches 1,4,16] [--rounds 3] [--steps 20] [--guidance 4]
                                     [--unet-batches 1,2,8,16] [--unet-iters 20] [--save out.png]
prints one JSON object: checkpoint step, UNet parameters, UNet FLOPs per row (counted with forward hooks),
and per batch the seconds of each round and their median.

    /usr/bin/python3 sample_torch.py [CKPT] --serve [--threads 2]
answers JSON lines on stdin so a benchmark can interleave PyTorch and onnxruntime runs in one process pair:
first line out {"ready": true, ...same metadata}; then {"op": "sample", "batch": B} -> {"seconds": s},
{"op": "unet", "batch": B, "iters": n} -> {"seconds": [...]}, {"op": "quit"}.

Without a checkpoint, or where torch cannot be imported, it prints {"skipped": "<why>"} and exits 0, so
the benchmark runs on machines without either (CI).
Run with Debian's system Python (/usr/bin/python3), which sees python3-torch.
"""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CKPT = "/work/train-run/ckpt.pt"
PROMPT_COLORS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"]
PROMPT_SHAPES = ["circle", "square", "triangle", "star", "cross"]


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", nargs="?", default=DEFAULT_CKPT, help=f"checkpoint with an 'ema' state dict (default {DEFAULT_CKPT})")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,4,16", help="requests per sampling call")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--unet-batches", default="1,2,8,16", help="rows per timed UNet call")
    ap.add_argument("--unet-iters", type=int, default=20)
    ap.add_argument("--model-dir", default=os.path.join(HERE, "..", "..", "models", "tiny-shapes"), help="for scheduler_config.json")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--save", help="write the last batch-B images as a PNG strip (needs no extra package)")
    return ap.parse_args()


class Sampler:
    def __init__(self, torch, ckpt_path, model_dir, threads):
        self.torch = torch
        torch.set_num_threads(threads)  # Debian's torch uses one core unless told
        try:
            torch.set_num_interop_threads(1)  # onnxruntime runs with interOpNumThreads 1
        except RuntimeError:
            pass  # already set (only possible once per process)
        sys.path.insert(0, HERE)
        from model import MAX_TOKENS  # noqa: E402
        from train import Models  # noqa: E402
        from vocab import encode  # noqa: E402

        self.max_tokens = MAX_TOKENS
        self.encode = encode
        ck = torch.load(ckpt_path, map_location="cpu")
        self.step_trained = int(ck.get("step", -1))
        m = Models()
        m.load_state_dict(ck["ema"])
        m.eval()
        self.text, self.unet = m.text, m.unet
        with open(os.path.join(model_dir, "scheduler", "scheduler_config.json")) as f:
            self.sched = json.load(f)
        self.alphas_cumprod = self._alphas_cumprod()
        self.size = 32

    def _alphas_cumprod(self):
        """diffusers' betas for the configured schedule, cumulative product in float64 (as the TS schedulers)."""
        c = self.sched
        T = c["num_train_timesteps"]
        if c["beta_schedule"] == "squaredcos_cap_v2":
            ab = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
            betas = [min(1 - ab((i + 1) / T) / ab(i / T), 0.999) for i in range(T)]
        elif c["beta_schedule"] == "linear":
            betas = [c["beta_start"] + (c["beta_end"] - c["beta_start"]) * i / (T - 1) for i in range(T)]
        else:
            raise SystemExit(f"sample_torch.py: unsupported beta_schedule {c['beta_schedule']}")
        out, p = [], 1.0
        for b in betas:
            p *= 1 - b
            out.append(p)
        return out

    def timesteps(self, n):
        c = self.sched
        T = c["num_train_timesteps"]
        if c.get("timestep_spacing") != "trailing":
            raise SystemExit("sample_torch.py mirrors the shipped config's 'trailing' spacing only")
        return [round(T - i * T / n) - 1 for i in range(n)]

    def prompts(self, batch):
        out = []
        for i in range(batch):
            fg = PROMPT_COLORS[i % len(PROMPT_COLORS)]
            bg = PROMPT_COLORS[(i + 3) % len(PROMPT_COLORS)]
            out.append(f"a {fg} {PROMPT_SHAPES[i % len(PROMPT_SHAPES)]} on a {bg} background")
        return out

    def sample(self, batch, steps, guidance, seed=0):
        """One guided DDIM run for `batch` requests; returns uint8 images [B, H, W, 3]."""
        torch = self.torch
        pred = self.sched["prediction_type"]
        T = self.sched["num_train_timesteps"]
        final = 1.0 if self.sched.get("set_alpha_to_one") else self.alphas_cumprod[0]
        with torch.inference_mode():
            ids = torch.tensor([self.encode(p, self.max_tokens) for p in self.prompts(batch)] + [self.encode("", self.max_tokens)])
            h = self.text(ids)  # one text-encoder call: the prompts and the empty negative prompt
            cfg = guidance > 1  # as the pipeline: guidance <= 1 runs the prompt rows only
            ctx = torch.cat([h[batch:].expand(batch, -1, -1), h[:batch]]) if cfg else h[:batch]  # [uncond; cond]
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, 3, self.size, self.size, generator=g)
            ratio = T // steps
            for t in self.timesteps(steps):
                if cfg:
                    out = self.unet(torch.cat([x, x]), torch.full((2 * batch,), float(t)), ctx)
                    u, c = out.chunk(2)
                    v = u + guidance * (c - u)
                else:
                    v = self.unet(x, torch.full((batch,), float(t)), ctx)
                a_t = self.alphas_cumprod[t]
                a_prev = self.alphas_cumprod[t - ratio] if t - ratio >= 0 else final
                sa, sb = math.sqrt(a_t), math.sqrt(1 - a_t)
                if pred == "v_prediction":
                    x0, eps = sa * x - sb * v, sa * v + sb * x
                elif pred == "epsilon":
                    x0, eps = (x - sb * v) / sa, v
                else:
                    raise SystemExit(f"sample_torch.py: unsupported prediction_type {pred}")
                x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
            return ((x / 2 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def time_sample(self, batch, steps, guidance):
        t0 = time.perf_counter()
        self.sample(batch, steps, guidance)
        return time.perf_counter() - t0

    def time_unet(self, rows, iters):
        """Seconds of each of `iters` UNet calls on `rows` random rows (like the TS bench's direct OnnxModel calls)."""
        torch = self.torch
        g = torch.Generator().manual_seed(rows)
        x = torch.randn(rows, 3, self.size, self.size, generator=g)
        t = torch.randint(0, 1000, (rows,), generator=g).float()
        ctx = torch.randn(rows, self.max_tokens, self.unet.text_pool[0].in_features, generator=g)
        out = []
        with torch.inference_mode():
            for _ in range(iters):
                t0 = time.perf_counter()
                self.unet(x, t, ctx)
                out.append(time.perf_counter() - t0)
        return out

    def count_flops(self):
        """UNet FLOPs of one row: Conv2d, Linear and attention matmuls at 2 per MAC, counted with forward hooks."""
        torch = self.torch
        from model import Attention  # noqa: E402

        total = {"conv": 0, "linear": 0, "attention": 0}

        def conv_hook(m, inp, out):
            total["conv"] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

        def linear_hook(m, inp, out):
            total["linear"] += 2 * (inp[0].numel() // m.in_features) * m.in_features * m.out_features

        def attn_hook(m, inp, out):
            x = inp[0]
            ctx = inp[1] if len(inp) > 1 and inp[1] is not None else x
            b, n, d = x.shape
            total["attention"] += 2 * 2 * b * n * ctx.shape[1] * d  # QKᵀ and W·V

        hooks = []
        for mod in self.unet.modules():
            if isinstance(mod, torch.nn.Conv2d):
                hooks.append(mod.register_forward_hook(conv_hook))
            elif isinstance(mod, torch.nn.Linear):
                hooks.append(mod.register_forward_hook(linear_hook))
            elif isinstance(mod, Attention):
                hooks.append(mod.register_forward_hook(attn_hook))
        with torch.inference_mode():
            self.unet(torch.zeros(1, 3, self.size, self.size), torch.tensor([500.0]), torch.zeros(1, self.max_tokens, self.unet.text_pool[0].in_features))
        for h in hooks:
            h.remove()
        return {"total": sum(total.values()), "parts": total}

    def metadata(self, ckpt_path, threads):
        return {
            "torch": self.torch.__version__,
            "threads": threads,
            "torch_threads": self.torch.get_num_threads(),
            "ckpt": os.path.abspath(ckpt_path),
            "ckpt_step": self.step_trained,
            "unet_params": sum(p.numel() for p in self.unet.parameters()),
            "flops_per_row": self.count_flops(),
        }


def save_strip(path, imgs):
    """A minimal PNG writer (zlib only) so checking the images needs no Pillow."""
    import struct
    import zlib

    b, h, w, _ = imgs.shape
    strip = imgs.permute(1, 0, 2, 3).reshape(h, b * w, 3).numpy()
    raw = b"".join(b"\x00" + strip[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", b * w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    args = parse_args()
    if not os.path.exists(args.ckpt):
        emit({"skipped": f"no checkpoint at {args.ckpt}"})
        return
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
        emit({"skipped": f"cannot import torch with {sys.executable}: {e}"})
        return
    s = Sampler(torch, args.ckpt, args.model_dir, args.threads)
    meta = s.metadata(args.ckpt, args.threads)
    if args.serve:
        emit({"ready": True, **meta})
        for line in sys.stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            op = msg.get("op")
            if op == "quit":
                break
            if op == "sample":
                emit({"seconds": s.time_sample(int(msg["batch"]), int(msg.get("steps", args.steps)), float(msg.get("guidance", args.guidance)))})
            elif op == "unet":
                emit({"seconds": s.time_unet(int(msg["batch"]), int(msg.get("iters", args.unet_iters)))})
            else:
                emit({"error": f"unknown op {op!r}"})
        return

    batches = [int(b) for b in args.batches.split(",")]
    unet_batches = [int(b) for b in args.unet_batches.split(",")]
    s.time_sample(1, 2, args.guidance)  # warm-up: first calls allocate
    times = {b: [] for b in batches}
    unet = {b: [] for b in unet_batches}
    for _ in range(args.rounds):  # interleave the sizes so drift in machine load hits them alike
        for b in batches:
            times[b].append(s.time_sample(b, args.steps, args.guidance))
        for b in unet_batches:
            unet[b].extend(s.time_unet(b, args.unet_iters))

    def med(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

    if args.save:
        save_strip(args.save, s.sample(batches[-1], args.steps, args.guidance))
    emit({
        **meta,
        "steps": args.steps,
        "guidance": args.guidance,
        "sample": {str(b): {"seconds": v, "median_s": med(v), "images_per_s": b / med(v)} for b, v in times.items()},
        "unet": {str(b): {"median_ms": 1000 * med(v), "calls": len(v)} for b, v in unet.items()},
    })


if __name__ == "__main__":
    main()
