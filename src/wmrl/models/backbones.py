"""Causal sequence backbones behind one interface.

Every backbone maps token embeddings (B, T, D) to features (B, T, D), where feature t depends on
tokens 0..t only (`forward`, the parallel path used for training), and can produce the same
features one token at a time from a carried state (`init_state` + `step`, the path used for
acting). Tests check that both paths agree.

* `transformer` — a pre-LayerNorm causal GPT (Radford et al. 2019, as in nanoGPT) with learned
  absolute positions and a key/value cache for stepping.
* `gtrxl` — the same with GTrXL gating (Parisotto et al. 2019): each residual connection x + f(x)
  becomes a GRU-type gate g(x, relu(f(x))) whose bias starts it near the identity, which the paper
  found to stabilise RL training.
* `gru` — a stack of GRUs (Cho et al. 2014).
* `ssm` — selective state-space layers of Mamba-2 (Dao & Gu 2024) in plain PyTorch, each followed
  by an MLP like a transformer block: per head, a scalar input-dependent decay a_t and
      h_t = a_t h_{t-1} + delta_t u_t B_t^T,   y_t = C_t . h_t + D u_t.
  Training evaluates the recurrence in chunks as masked matrices (`chunked_ssd`: batched matmuls,
  linear in T); acting updates the fixed-size state one step at a time, at a cost flat in T.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wmrl.models.config import BACKBONES


class Backbone(nn.Module):
    """The interface: `forward(x)` over a whole sequence, `step(x_t, state)` one token at a time."""

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """`positions` (T,): each token's position (default 0..T-1), which only the transformer reads;
        tokens may share one (a Decision Transformer's step)."""
        raise NotImplementedError

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> Any:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def select_state(self, state: Any, index: torch.Tensor) -> Any:
        """The states of the batch entries `index` (in that order; entries may repeat)."""
        raise NotImplementedError


def make_backbone(kind: str, dim: int, layers: int, heads: int, max_tokens: int, state_size: int = 16) -> Backbone:
    """`heads` are the transformer's attention heads; the SSM has one head per SSM_HEAD_DIM channels."""
    if kind in ("transformer", "gtrxl"):
        return Transformer(dim, layers, heads, max_tokens, gated=kind == "gtrxl")
    if kind == "gru":
        return GRU(dim, layers)
    if kind == "ssm":
        return SSM(dim, layers, state_size)
    raise ValueError(f"unknown backbone {kind!r}; choose one of {', '.join(BACKBONES)}")


def backbone_parameters(kind: str, dim: int, layers: int, heads: int, max_tokens: int, state_size: int = 16) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return sum(p.numel() for p in make_backbone(kind, dim, layers, heads, max_tokens, state_size).parameters())


@functools.cache  # the DAG asks once per job of an experiment; the answer depends on these integers alone
def matched_width(kind: str, dim: int, layers: int, heads: int, max_tokens: int, state_size: int = 16) -> int:
    """The width at which backbone `kind` (same layers) has the parameter count closest to the plain
    transformer's of width `dim`: a GRU layer holds 6 d^2 weights, a GTrXL block 24 d^2, a
    transformer block 12 d^2 and an SSM block 11 d^2, so equal widths would not compare like with
    like. Widths are multiples of the attention heads (and split evenly into the SSM's heads)."""
    target = backbone_parameters("transformer", dim, layers, heads, max_tokens, state_size)
    widths = [w for w in range(heads, 4 * dim + 1, heads) if kind != "ssm" or w % ssm_heads(w) == 0]
    lo, hi = 0, len(widths) - 1
    while lo < hi:  # the first width with at least the target's count (counts grow with width)
        mid = (lo + hi) // 2
        if backbone_parameters(kind, widths[mid], layers, heads, max_tokens, state_size) < target:
            lo = mid + 1
        else:
            hi = mid
    near = [widths[i] for i in (lo - 1, lo) if 0 <= i < len(widths)]
    return min(near, key=lambda w: abs(backbone_parameters(kind, w, layers, heads, max_tokens, state_size) - target))


class MLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


# --------------------------------------------------------------------------- transformer


class GRUGate(nn.Module):
    """GTrXL's gate g(x, y) = (1 - z) * x + z * tanh(W_g y + U_g (r * x)), with
    r = sigmoid(W_r y + U_r x) and z = sigmoid(W_z y + U_z x - b_g); b_g = 2 keeps z small at init."""

    def __init__(self, dim: int, bias: float = 2.0):
        super().__init__()
        self.w = nn.Linear(dim, 3 * dim, bias=False)
        self.u_rz = nn.Linear(dim, 2 * dim, bias=False)
        self.u_g = nn.Linear(dim, dim, bias=False)
        self.bias = bias

    def forward(self, x, y):
        wr, wz, wg = self.w(y).chunk(3, -1)
        ur, uz = self.u_rz(x).chunk(2, -1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.bias)
        h = torch.tanh(wg + self.u_g(r * x))
        return (1 - z) * x + z * h


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"model width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(x).split(d, -1))
        if cache is not None:  # one new token attends to every cached one: causal by construction
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None)
        return self.proj(y.transpose(1, 2).reshape(b, t, d)), (k, v)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, gated: bool):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), CausalSelfAttention(dim, heads)
        self.ln2, self.mlp = nn.LayerNorm(dim), MLP(dim)
        self.gates = nn.ModuleList([GRUGate(dim), GRUGate(dim)]) if gated else None

    def _residual(self, i: int, x, y):
        return x + y if self.gates is None else self.gates[i](x, F.relu(y))

    def forward(self, x, cache=None):
        y, cache = self.attn(self.ln1(x), cache)
        x = self._residual(0, x, y)
        return self._residual(1, x, self.mlp(self.ln2(x))), cache


class Transformer(Backbone):
    def __init__(self, dim: int, layers: int, heads: int, max_tokens: int, gated: bool = False):
        super().__init__()
        self.max_tokens = max_tokens
        self.position = nn.Embedding(max_tokens, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, gated) for _ in range(layers))

    def forward(self, x, positions=None):
        if positions is None:
            positions = torch.arange(x.shape[1], device=x.device)
        if int(positions.max()) >= self.max_tokens:
            raise ValueError(f"position {int(positions.max())} exceeds the transformer's context of {self.max_tokens}")
        x = x + self.position(positions)
        for block in self.blocks:
            x, _ = block(x)
        return x

    def init_state(self, batch, device="cpu"):
        return {"t": 0, "cache": [None] * len(self.blocks)}

    def step(self, x, state):
        t = state["t"]
        if t >= self.max_tokens:
            raise ValueError(f"the transformer's context of {self.max_tokens} tokens is full: start a new state")
        h = (x + self.position.weight[t]).unsqueeze(1)
        caches = []
        for block, cache in zip(self.blocks, state["cache"], strict=True):
            h, cache = block(h, cache)
            caches.append(cache)
        return h.squeeze(1), {"t": t + 1, "cache": caches}

    def select_state(self, state, index):
        return {"t": state["t"], "cache": [(k[index], v[index]) for k, v in state["cache"]]}


# --------------------------------------------------------------------------- gru


class GRU(Backbone):
    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True)

    def forward(self, x, positions=None):  # recurrent: order alone
        return self.gru(x)[0]

    def init_state(self, batch, device="cpu"):
        return torch.zeros(self.gru.num_layers, batch, self.gru.hidden_size, device=device)

    def step(self, x, state):
        y, state = self.gru(x.unsqueeze(1), state)
        return y.squeeze(1), state

    def select_state(self, state, index):
        return state[:, index]  # (layers, batch, hidden)


# --------------------------------------------------------------------------- ssm


def chunked_ssd(x: torch.Tensor, log_a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                chunk: int = 64) -> torch.Tensor:
    """y_t = C_t . h_t for h_t = a_t h_{t-1} + x_t B_t^T (h_{-1} = 0), per head, without a loop over t.

    x (batch, T, heads, P), log_a (batch, T, heads) <= 0, B and C (batch, T, N) shared by the heads;
    h_t is (P x N) per head. Within a chunk of Q steps the map from inputs to outputs is a masked
    matrix, y_t = sum_{s<=t} (C_t . B_s) exp(cum_t - cum_s) x_s with cum the running sum of log_a
    (Mamba-2's state-space duality), which costs two small matmuls per chunk. Across chunks the
    state carries: each chunk's end state is sum_s exp(cum_end - cum_s) x_s B_s^T, the states
    entering the chunks follow from a (chunks x chunks) decay matrix, and each step adds
    exp(cum_t) C_t . h_start. Work is O(T Q) instead of the O(T log T) of a prefix scan, and all
    of it is batched matmul."""
    batch, length, heads, width = x.shape
    chunk = min(chunk, length)
    pad = -length % chunk
    if pad:
        x, log_a, B, C = (F.pad(z, (0, 0) * (z.dim() - 2) + (0, pad)) for z in (x, log_a, B, C))
    chunks = x.shape[1] // chunk
    x = x.view(batch, chunks, chunk, heads, width)
    B, C = B.view(batch, chunks, chunk, -1), C.view(batch, chunks, chunk, -1)
    cum = log_a.view(batch, chunks, chunk, heads).cumsum(2).transpose(2, 3)  # (b, c, h, Q)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=x.device).tril()
    decay = torch.exp((cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill(~causal, float("-inf")))  # (b,c,h,Q,Q)
    scores = (C @ B.transpose(-1, -2)).unsqueeze(2) * decay  # (b, c, h, Q, Q)
    x_heads = x.transpose(2, 3)  # (b, c, h, Q, P)
    y = scores @ x_heads
    if chunks > 1:
        to_end = torch.exp(cum[..., -1:] - cum)  # (b, c, h, Q)
        end_states = (x_heads * to_end.unsqueeze(-1)).transpose(-1, -2) @ B.unsqueeze(2)  # (b, c, h, P, N)
        totals = cum[..., -1].transpose(1, 2)  # (b, h, c): each chunk's summed log decay
        spans = totals.cumsum(-1)
        between = spans.unsqueeze(-1) - totals.unsqueeze(-1) - spans.unsqueeze(-2)  # chunk j's end -> chunk i's start
        strictly_before = torch.ones(chunks, chunks, dtype=torch.bool, device=x.device).tril(-1)
        carry = torch.exp(between.masked_fill(~strictly_before, float("-inf")))  # (b, h, c, c)
        starts = (carry @ end_states.transpose(1, 2).flatten(-2)).view(batch, heads, chunks, width, -1)
        from_start = C.unsqueeze(2) @ starts.transpose(1, 2).transpose(-1, -2)  # (b, c, h, Q, P)
        y = y + from_start * torch.exp(cum).unsqueeze(-1)
    return y.transpose(2, 3).reshape(batch, chunks * chunk, heads, width)[:, :length]


SSM_HEAD_DIM = 16  # about this many channels per SSM head (Mamba-2 uses 64 at widths of 768 and more)


def ssm_heads(dim: int) -> int:
    return max(1, dim // SSM_HEAD_DIM)


class SelectiveSSM(nn.Module):
    """One selective state-space layer of Mamba-2 (Dao & Gu 2024): per head, a scalar decay
    a_t = exp(delta_t A) with an input-dependent step delta_t and A = -exp(A_log) < 0, input-dependent
    B_t, C_t shared by the heads, a skip D and a SiLU gate:
        h_t = a_t h_{t-1} + delta_t u_t B_t^T,   y_t = (C_t . h_t + D u_t) * silu(z_t)."""

    def __init__(self, dim: int, state_size: int):
        super().__init__()
        self.heads, self.state_size = ssm_heads(dim), state_size
        if dim % self.heads:
            raise ValueError(f"an SSM of width {dim} has {self.heads} heads (one per ~{SSM_HEAD_DIM} channels), "
                             f"which do not divide it")
        self.in_proj = nn.Linear(dim, 2 * dim + 2 * state_size + self.heads)  # u, gate z, B, C, delta
        # Mamba-2's initialisation: A ~ -U(1, 16) and delta = softplus(.) log-uniform in [1e-3, 1e-1]
        # per head: heads that forget within a few steps and heads that remember hundreds
        self.A_log = nn.Parameter(torch.log(torch.empty(self.heads).uniform_(1, 16)))
        step = torch.exp(torch.empty(self.heads).uniform_(math.log(1e-3), math.log(1e-1)))
        self.delta_bias = nn.Parameter(step + torch.log(-torch.expm1(-step)))  # softplus^-1(step)
        self.D = nn.Parameter(torch.ones(self.heads))
        self.out = nn.Linear(dim, dim)

    def _terms(self, x):
        d, n, h = x.shape[-1], self.state_size, self.heads
        u, gate, B, C, delta = self.in_proj(x).split([d, d, n, n, h], -1)
        delta = F.softplus(delta + self.delta_bias)  # (..., heads)
        u = u.unflatten(-1, (h, -1))  # (..., heads, P)
        return u, gate, B, C, delta, delta * -torch.exp(self.A_log)

    def _output(self, y, u, gate):
        return self.out(((y + self.D.unsqueeze(-1) * u).flatten(-2)) * F.silu(gate))

    def forward(self, x):
        u, gate, B, C, delta, log_a = self._terms(x)
        return self._output(chunked_ssd(u * delta.unsqueeze(-1), log_a, B, C), u, gate)

    def step(self, x, h):
        u, gate, B, C, delta, log_a = self._terms(x)  # x (batch, D); h (batch, heads, P, N)
        h = torch.exp(log_a)[..., None, None] * h + (u * delta.unsqueeze(-1)).unsqueeze(-1) * B[:, None, None]
        return self._output((h @ C[:, None, :, None]).squeeze(-1), u, gate), h


class SSM(Backbone):
    def __init__(self, dim: int, layers: int, state_size: int = 16):
        super().__init__()
        self.dim, self.state_size = dim, state_size
        self.layers = nn.ModuleList(SelectiveSSM(dim, state_size) for _ in range(layers))
        self.mixer_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.mlps = nn.ModuleList(MLP(dim) for _ in range(layers))
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))

    def forward(self, x, positions=None):  # recurrent: order alone
        for ssm, ln1, mlp, ln2 in zip(self.layers, self.mixer_norms, self.mlps, self.mlp_norms, strict=True):
            x = x + ssm(ln1(x))
            x = x + mlp(ln2(x))
        return x

    def init_state(self, batch, device="cpu"):
        heads = ssm_heads(self.dim)
        shape = (batch, heads, self.dim // heads, self.state_size)
        return [torch.zeros(shape, device=device) for _ in self.layers]

    def step(self, x, state):
        new_state = []
        for ssm, ln1, mlp, ln2, h in zip(self.layers, self.mixer_norms, self.mlps, self.mlp_norms, state, strict=True):
            y, h = ssm.step(ln1(x), h)
            x = x + y
            x = x + mlp(ln2(x))
            new_state.append(h)
        return x, new_state

    def select_state(self, state, index):
        return [h[index] for h in state]
