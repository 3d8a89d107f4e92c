"""Export a tiny-shapes checkpoint (EMA weights) to the diffusers ONNX folder layout.

/usr/bin/python3 export.py --ckpt ckpt.pt --out ../../models/tiny-shapes
"""
import argparse
import json
import os

import torch

from model import MAX_TOKENS, TEXT_DIM
from schedule import NUM_TRAIN_TIMESTEPS
from train import Models
from vocab import PAD_ID, UNK_ID, VOCAB

SIZE = 32


class VaeDecoder(torch.nn.Module):
    """Honest identity decoder: the model works in pixel space, so 'latents' already are the image in [-1, 1]."""

    def forward(self, latent_sample):
        return latent_sample * 1.0


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def tokenizer_json():
    return {
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": MAX_TOKENS, "strategy": "LongestFirst", "stride": 0},
        "padding": {
            "strategy": {"Fixed": MAX_TOKENS},
            "direction": "Right",
            "pad_to_multiple_of": None,
            "pad_id": PAD_ID,
            "pad_type_id": 0,
            "pad_token": "[PAD]",
        },
        "added_tokens": [
            {"id": PAD_ID, "content": "[PAD]", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
            {"id": UNK_ID, "content": "[UNK]", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        ],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": VOCAB, "unk_token": "[UNK]"},
    }


def export_onnx(m, out):
    """Writes the text encoder, UNet and (identity) VAE decoder of `m` as ONNX under `out`."""
    ids = torch.zeros(2, MAX_TOKENS, dtype=torch.long)
    torch.onnx.export(m.text, (ids,), os.path.join(out, "text_encoder/model.onnx"), input_names=["input_ids"],
                      output_names=["last_hidden_state"], dynamic_axes={"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}},
                      opset_version=17)
    x = torch.randn(2, 3, SIZE, SIZE)
    t = torch.tensor([999.0, 10.0])
    ctx = torch.randn(2, MAX_TOKENS, TEXT_DIM)
    torch.onnx.export(m.unet, (x, t, ctx), os.path.join(out, "unet/model.onnx"),
                      input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["out_sample"],
                      dynamic_axes={"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch"},
                                    "out_sample": {0: "batch", 2: "height", 3: "width"}},
                      opset_version=17)
    torch.onnx.export(VaeDecoder(), (x,), os.path.join(out, "vae_decoder/model.onnx"), input_names=["latent_sample"],
                      output_names=["sample"], dynamic_axes={"latent_sample": {0: "batch", 2: "height", 3: "width"}, "sample": {0: "batch", 2: "height", 3: "width"}}, opset_version=17)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default="ckpt.pt")
    ap.add_argument("--out", default="../../models/tiny-shapes")
    ap.add_argument("--fixtures", default="../../test/fixtures", help="where the onnx-vs-torch reference values go")
    ap.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    args = ap.parse_args()
    ck = torch.load(args.ckpt)
    m = Models()
    m.load_state_dict(ck["net"] if args.raw else ck["ema"])
    m.eval()
    out = args.out
    for d in ["text_encoder", "unet", "vae_decoder", "scheduler", "tokenizer"]:
        os.makedirs(os.path.join(out, d), exist_ok=True)

    export_onnx(m, out)

    write_json(os.path.join(out, "model_index.json"), {
        "_class_name": "OmniTinyShapesPipeline",
        "_diffusers_version": "0.30.0",
        "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        # read by omni-diffusion (diffusers ignores keys that start with "_")
        "_omni_defaults": {"num_inference_steps": 20, "guidance_scale": 8.0, "scheduler": "ddim"},
    })
    write_json(os.path.join(out, "scheduler/scheduler_config.json"), {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
        "steps_offset": 0,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "rescale_betas_zero_snr": False,
        # SD 1.x's Karras range: over the cosine schedule's own (σ up to 2·10⁴) the Karras samplers drew wrong colours
        "sigma_min": 0.0292,
        "sigma_max": 14.6146,
        "_omni_unfit_samplers": {
            "pndm": "PLMS extrapolates this cosine v-prediction model's outputs too far below 20 steps and draws the wrong colours (7 of 16 images right at 8 steps, 12 of 16 at 12; docs/schedulers.md)",
        },
    })
    write_json(os.path.join(out, "unet/config.json"), {
        "sample_size": SIZE, "in_channels": 3, "out_channels": 3, "cross_attention_dim": TEXT_DIM,
        "block_out_channels": [64, 128, 128], "timestep_dtype": "float32",
        "size_multiple": 8,
        "parameters": sum(p.numel() for p in m.unet.parameters()),
    })
    write_json(os.path.join(out, "text_encoder/config.json"), {
        "vocab_size": len(VOCAB), "hidden_size": TEXT_DIM, "max_position_embeddings": MAX_TOKENS, "num_hidden_layers": 2,
        "parameters": sum(p.numel() for p in m.text.parameters()),
    })
    write_json(os.path.join(out, "vae_decoder/config.json"), {
        "_note": "identity decoder: tiny-shapes denoises in pixel space",
        "latent_channels": 3, "out_channels": 3, "scaling_factor": 1.0, "block_out_channels": [3], "sample_size": SIZE,
    })
    write_json(os.path.join(out, "tokenizer/tokenizer.json"), tokenizer_json())
    write_json(os.path.join(out, "tokenizer/tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_TOKENS, "pad_token": "[PAD]", "unk_token": "[UNK]",
        "padding_side": "right",
    })
    # reference outputs so the TypeScript side can check onnxruntime against torch
    with torch.no_grad():
        from vocab import encode
        ref_ids = torch.tensor([encode("a red circle on a blue background", MAX_TOKENS)])
        h = m.text(ref_ids)
        g = torch.Generator().manual_seed(0)
        xs = torch.randn(1, 3, SIZE, SIZE, generator=g)
        o = m.unet(xs, torch.tensor([500.0]), h)
    write_json(os.path.join(args.fixtures, "tiny-shapes-reference.json"), {
        "prompt": "a red circle on a blue background", "input_ids": ref_ids[0].tolist(),
        "hidden_state_first8": h[0, 0, :8].tolist(), "sample": xs.flatten().tolist(), "timestep": 500.0,
        "out_sample_first16": o.flatten()[:16].tolist(), "out_sample_sum": float(o.sum()),
        "step": ck["step"], "loss": ck.get("loss"),
    })
    print(f"exported step {ck['step']} (loss {ck.get('loss')}) to {out}")


if __name__ == "__main__":
    main()
