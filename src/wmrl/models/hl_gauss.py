"""HL-Gauss: scalar regression as classification over a histogram (Farebrother et al. 2024,
"Stop Regressing: Training Value Functions via Classification for Scalable Deep RL").

The support [v_min, v_max] is cut into m bins of width w with edges z_0 < ... < z_m. A scalar
target y, clamped to the support, becomes the probabilities of a Gaussian N(y, sigma^2) falling in
each bin, renormalised to the support:

    p_i(y) = (Phi((z_{i+1} - y) / sigma) - Phi((z_i - y) / sigma)) / (Phi((z_m - y) / sigma) - Phi((z_0 - y) / sigma))

with sigma tied to the bin width (sigma = 0.75 w, the paper's recommended ratio). The network
predicts logits over the bins and is trained with cross-entropy against p(y); its scalar
prediction is the mean of the predicted histogram, sum_i softmax(logits)_i * c_i, c_i the centres.
"""

from __future__ import annotations

import torch
from torch import nn


class HLGauss(nn.Module):
    def __init__(self, v_min: float, v_max: float, bins: int, sigma_ratio: float = 0.75):
        super().__init__()
        if not v_max > v_min or bins < 2:
            raise ValueError(f"HL-Gauss needs v_max > v_min and >= 2 bins, got [{v_min}, {v_max}] with {bins}")
        self.v_min, self.v_max, self.bins = float(v_min), float(v_max), int(bins)
        self.sigma = sigma_ratio * (self.v_max - self.v_min) / self.bins
        edges = torch.linspace(self.v_min, self.v_max, self.bins + 1)
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("centres", (edges[:-1] + edges[1:]) / 2, persistent=False)

    def target(self, y: torch.Tensor) -> torch.Tensor:
        """Histogram targets p(y), shape y.shape + (bins,); each sums to 1."""
        y = y.clamp(self.v_min, self.v_max).unsqueeze(-1)
        cdf = torch.special.ndtr((self.edges - y) / self.sigma)
        mass = cdf[..., 1:] - cdf[..., :-1]
        return mass / (cdf[..., -1:] - cdf[..., :1])

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """The scalar prediction: the mean of the histogram softmax(logits)."""
        return (logits.softmax(-1) * self.centres).sum(-1)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the predicted histogram against p(y), per element (no reduction)."""
        return -(self.target(y) * logits.log_softmax(-1)).sum(-1)

    def extra_repr(self) -> str:
        return f"support=[{self.v_min}, {self.v_max}], bins={self.bins}, sigma={self.sigma:.4g}"


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|) (DreamerV3): squashes returns of very different scales across games."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())
