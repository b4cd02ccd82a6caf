"""Scalar heads: how the reward, value and Q heads learn a scalar target y (a symlog-squashed reward
or return) and how their outputs decode back to y. `model.value_loss` picks one for all three.

* `hl_gauss` — HL-Gauss (Farebrother et al. 2024, "Stop Regressing: Training Value Functions via
  Classification for Scalable Deep RL"). The support [v_min, v_max] is cut into m bins of width w
  with edges z_0 < ... < z_m. The target y, clamped to the support, becomes the probabilities of a
  Gaussian N(y, sigma^2) falling in each bin, renormalised to the support:
      p_i(y) = (Phi((z_{i+1} - y) / sigma) - Phi((z_i - y) / sigma)) / (Phi((z_m - y) / sigma) - Phi((z_0 - y) / sigma))
  with sigma = 0.75 w (the paper's recommended ratio).
* `two_hot` — DreamerV3's target (Hafner et al. 2023): y's mass split between the two bin centres
  c_k <= y < c_{k+1} around it, p_k = (c_{k+1} - y) / w and p_{k+1} = (y - c_k) / w.
* `mse` — the regression baseline of "Stop Regressing": one output f, loss (f - y)^2 / 2, decoded as f.

Both histogram heads predict logits over the bins, are trained with the cross-entropy
-sum_i p_i(y) log softmax(logits)_i, and decode to the histogram's mean sum_i softmax(logits)_i c_i.
"""

from __future__ import annotations

import torch
from torch import nn

from wmrl.models.config import VALUE_LOSSES


class Histogram(nn.Module):
    """A categorical over `bins` equal bins of [v_min, v_max]; subclasses define the target p(y)."""

    def __init__(self, v_min: float, v_max: float, bins: int):
        super().__init__()
        if not v_max > v_min or bins < 2:
            raise ValueError(f"a histogram head needs v_max > v_min and >= 2 bins, got [{v_min}, {v_max}] with {bins}")
        self.v_min, self.v_max, self.outputs = float(v_min), float(v_max), int(bins)
        self.width = (self.v_max - self.v_min) / self.outputs
        edges = torch.linspace(self.v_min, self.v_max, self.outputs + 1)
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("centres", (edges[:-1] + edges[1:]) / 2, persistent=False)

    def target(self, y: torch.Tensor) -> torch.Tensor:
        """Histogram targets p(y), shape y.shape + (bins,); each sums to 1."""
        raise NotImplementedError

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """The scalar prediction: the mean of the histogram softmax(logits)."""
        return (logits.softmax(-1) * self.centres).sum(-1)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the predicted histogram against p(y), per element (no reduction)."""
        return -(self.target(y) * logits.log_softmax(-1)).sum(-1)

    def extra_repr(self) -> str:
        return f"support=[{self.v_min}, {self.v_max}], bins={self.outputs}"


class HLGauss(Histogram):
    def __init__(self, v_min: float, v_max: float, bins: int, sigma_ratio: float = 0.75):
        super().__init__(v_min, v_max, bins)
        self.sigma = sigma_ratio * self.width

    def target(self, y):
        y = y.clamp(self.v_min, self.v_max).unsqueeze(-1)
        cdf = torch.special.ndtr((self.edges - y) / self.sigma)
        mass = cdf[..., 1:] - cdf[..., :-1]
        return mass / (cdf[..., -1:] - cdf[..., :1])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma:.4g}"


class TwoHot(Histogram):
    def target(self, y):
        position = ((y - self.centres[0]) / self.width).clamp(0, self.outputs - 1)  # in bin-centre units
        low = position.floor().clamp(max=self.outputs - 2)
        above = (position - low).unsqueeze(-1)
        low = low.long().unsqueeze(-1)
        target = torch.zeros(*y.shape, self.outputs, dtype=y.dtype, device=y.device)
        return target.scatter(-1, low, 1 - above).scatter(-1, low + 1, above)


class Regression(nn.Module):
    outputs = 1

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return out.squeeze(-1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (out.squeeze(-1) - y) ** 2


def make_scalar_head(kind: str, support: float, bins: int) -> nn.Module:
    """The head's loss and decoding over the symlog support [-support, support]."""
    if kind == "hl_gauss":
        return HLGauss(-support, support, bins)
    if kind == "two_hot":
        return TwoHot(-support, support, bins)
    if kind == "mse":
        return Regression()
    raise ValueError(f"unknown value loss {kind!r}; choose one of {', '.join(VALUE_LOSSES)}")


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|) (DreamerV3): squashes returns of very different scales across games."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())
