"""DDPM noise schedule with diffusers' semantics (beta_schedule="squaredcos_cap_v2")."""
import math
import torch

NUM_TRAIN_TIMESTEPS = 1000


def alphas_cumprod(T=NUM_TRAIN_TIMESTEPS, max_beta=0.999):
    def ab(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - ab((i + 1) / T) / ab(i / T), max_beta) for i in range(T)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0).float()
