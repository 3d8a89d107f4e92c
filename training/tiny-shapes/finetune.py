"""Fine-tune the shipped tiny-shapes from its own ONNX weights, drawing some shapes more often.

The first training run (train.py, 2,900 steps) left stars at 47 % by bench/prompt-fidelity.ts and every other
shape at 97-100 %. Training again from scratch takes 1-1.5 hours of both cores; this continues from the
exported weights instead (no checkpoint is committed, so they are read back from the ONNX files, see
`onnx_sources`), with train.py's loss, data and schedule, but each batch draws the shapes with the weights of
--shape-weights, at a constant learning rate after a short warm-up. It writes a checkpoint that export.py reads.

/usr/bin/python3 finetune.py --from ../../models/tiny-shapes --steps 1000 --ckpt ft.pt
/usr/bin/python3 export.py --ckpt ft.pt --out ../../models/tiny-shapes
"""
import argparse
import os

import numpy as np
import onnx
import torch
from onnx import numpy_helper

import data
from train import Models, train_loop


def onnx_sources(folder):
    """Where each initializer of an export comes from: {part: {name: (parameter name, transposed)}}.

    The exporter stores most weights under their state-dict names, but a Linear's weight feeds a MatMul and is
    stored transposed under a generated name. Exporting a copy whose every parameter holds a marker (its index
    times 4096 plus a ramp, exact in float32) with export.py's own calls tells each initializer's source.
    """
    import tempfile

    from export import export_onnx

    marked = Models()
    params = {}
    with torch.no_grad():
        for part, module in (("text_encoder", marked.text), ("unet", marked.unet)):
            for i, (name, p) in enumerate(module.named_parameters()):
                p.copy_((i * 4096 + torch.arange(p.numel()) % 4096).float().reshape(p.shape))
                params[(part, i)] = (name, p.detach().clone())
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("text_encoder", "unet", "vae_decoder"):
            os.makedirs(os.path.join(tmp, d))
        export_onnx(marked.eval(), tmp)
        for part in ("text_encoder", "unet"):
            out[part] = {}
            for init in onnx.load(os.path.join(tmp, part, "model.onnx")).graph.initializer:
                a = torch.from_numpy(numpy_helper.to_array(init).copy())
                src = params.get((part, int(a.flatten()[0]) // 4096)) if a.numel() else None
                if src is None:
                    continue  # a constant of the graph, not a weight
                name, p = src
                if a.numel() == p.numel() and torch.equal(a.flatten(), p.flatten()):
                    out[part][init.name] = (name, False)  # the same values, perhaps reshaped (GroupNorm's are (C, 1, 1))
                elif a.dim() == 2 and a.shape == p.T.shape and torch.equal(a, p.T):
                    out[part][init.name] = (name, True)
    return out


def load_onnx_weights(models, folder):
    """Copies an export's weights back into `models` (text encoder and UNet); every parameter must be found."""
    sources = onnx_sources(folder)
    for part, module in (("text_encoder", models.text), ("unet", models.unet)):
        state = {}
        for init in onnx.load(os.path.join(folder, part, "model.onnx")).graph.initializer:
            if init.name in sources[part]:
                name, transposed = sources[part][init.name]
                a = torch.from_numpy(numpy_helper.to_array(init).copy())
                state[name] = a.T.contiguous() if transposed else a.reshape(module.get_parameter(name).shape)
        missing = [k for k, _ in module.named_parameters() if k not in state]
        if missing:
            raise SystemExit(f"{part}: no initializer of {folder} holds {missing[:5]} ({len(missing)} in all)")
        module.load_state_dict(state, strict=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="src", default="../../models/tiny-shapes", help="the exported model to start from")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--shape-weights", default="circle=1,square=1,triangle=1,star=3,cross=1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt", default="ft.pt")
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    w = dict(kv.split("=") for kv in args.shape_weights.split(","))
    shape_p = np.array([float(w.get(s, 1)) for s in data.SHAPES])
    shape_p /= shape_p.sum()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net, ema = Models(), Models()
    step = 0
    if os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt)
        net.load_state_dict(ck["net"])
        ema.load_state_dict(ck["ema"])
        step = ck["step"]
        print(f"resumed at step {step}", flush=True)
    else:
        load_onnx_weights(net, args.src)
        ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    if step and "opt" in ck:
        opt.load_state_dict(ck["opt"])
    print(f"shapes drawn with p = {dict(zip(data.SHAPES, shape_p.round(3)))}", flush=True)

    train_loop(net, ema, opt, step, args, lambda s: args.lr * min(1.0, (s + 1) / 50), lambda _: args.ema, shape_p)

if __name__ == "__main__":
    main()
