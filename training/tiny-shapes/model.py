"""tiny-shapes networks: a word-level text encoder and a small conditional UNet in pixel space.

The UNet works on the 32x32 RGB image folded 2x2 into 12x16x16 (space-to-depth), which keeps the
convolutions cheap on a CPU. Text enters twice: cross-attention on the encoder's hidden states at 8x8 and
4x4, and the mean of those states added to the timestep embedding (the pooled-text trick of SDXL), which
helps a small net learn the global "which shape" decision quickly.
Attention is written with matmul/softmax so the ONNX export stays plain.
"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_TOKENS = 16
TEXT_DIM = 128


class TextEncoder(nn.Module):
    def __init__(self, vocab_size, dim=TEXT_DIM, layers=2, heads=4, max_len=MAX_TOKENS):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList([TransformerLayer(dim, heads, cross_dim=None) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, input_ids):
        h = self.tok(input_ids) + self.pos[:, : input_ids.shape[1]]
        for b in self.blocks:
            h = b(h)
        return self.norm(h)


class Attention(nn.Module):
    def __init__(self, dim, heads, ctx_dim=None):
        super().__init__()
        ctx_dim = ctx_dim or dim
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(ctx_dim, dim, bias=False)
        self.v = nn.Linear(ctx_dim, dim, bias=False)
        self.o = nn.Linear(dim, dim)

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.k(ctx).reshape(b, ctx.shape[1], h, d // h).transpose(1, 2)
        v = self.v(ctx).reshape(b, ctx.shape[1], h, d // h).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        return self.o((w @ v).transpose(1, 2).reshape(b, n, d))


class TransformerLayer(nn.Module):
    """Pre-norm self-attention, optional cross-attention, GELU feed-forward."""

    def __init__(self, dim, heads, cross_dim):
        super().__init__()
        self.n1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.cross = cross_dim is not None
        if self.cross:
            self.n2 = nn.LayerNorm(dim)
            self.xattn = Attention(dim, heads, cross_dim)
        self.n3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, x, ctx=None):
        x = x + self.attn(self.n1(x))
        if self.cross:
            x = x + self.xattn(self.n2(x), ctx)
        return x + self.ff(self.n3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, ch, heads, ctx_dim):
        super().__init__()
        self.norm = nn.GroupNorm(8, ch)
        self.block = TransformerLayer(ch, heads, ctx_dim)

    def forward(self, x, ctx):
        b, c, hh, ww = x.shape
        h = self.norm(x).reshape(b, c, hh * ww).transpose(1, 2)
        h = self.block(h, ctx)
        return x + h.transpose(1, 2).reshape(b, c, hh, ww)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, t):
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(t)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class UNet(nn.Module):
    def __init__(self, ch=(64, 128, 128), ctx_dim=TEXT_DIM, heads=4):
        super().__init__()
        c1, c2, c3 = ch
        temb = c1 * 4
        self.temb_dim = c1
        self.time = nn.Sequential(nn.Linear(c1, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.text_pool = nn.Sequential(nn.Linear(ctx_dim, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(12, c1, 3, padding=1)
        # 16x16
        self.d1a = ResBlock(c1, c1, temb)
        self.down1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        # 8x8
        self.d2a = ResBlock(c1, c2, temb)
        self.d2t = SpatialTransformer(c2, heads, ctx_dim)
        self.down2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        # 4x4
        self.m1 = ResBlock(c2, c3, temb)
        self.mt = SpatialTransformer(c3, heads, ctx_dim)
        self.m2 = ResBlock(c3, c3, temb)
        # up 8x8
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.u2a = ResBlock(c3 + c2, c2, temb)
        self.u2t = SpatialTransformer(c2, heads, ctx_dim)
        # up 16x16
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.u1a = ResBlock(c2 + c1, c1, temb)
        self.norm_out = nn.GroupNorm(8, c1)
        self.conv_out = nn.Conv2d(c1, 12, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, sample, timestep, encoder_hidden_states):
        b = sample.shape[0]
        x = F.pixel_unshuffle(sample, 2)
        t = self.time(timestep_embedding(timestep, self.temb_dim))
        t = t + self.text_pool(encoder_hidden_states.mean(dim=1))
        h0 = self.conv_in(x)
        h1 = self.d1a(h0, t)
        h = self.down1(h1)
        h2 = self.d2t(self.d2a(h, t), encoder_hidden_states)
        h = self.down2(h2)
        h = self.m2(self.mt(self.m1(h, t), encoder_hidden_states), t)
        h = self.up2(h)
        h = self.u2t(self.u2a(torch.cat([h, h2], 1), t), encoder_hidden_states)
        h = self.up1(h)
        h = self.u1a(torch.cat([h, h1], 1), t)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, 2)
