"""Causal sequence backbones behind one interface.

Every backbone maps token embeddings (B, T, D) to features (B, T, D), where feature t depends on
tokens 0..t only (`forward`, the parallel path used for training), and can produce the same
features one token at a time from a carried state (`init_state` + `step`, the path used for
acting). Tests check that both paths agree.

* `transformer` — a pre-LayerNorm causal GPT (Radford et al. 2019, as in nanoGPT) with learned
  absolute positions and a key/value cache for stepping; optionally GTrXL gating (Parisotto et al.
  2019): each residual connection x + f(x) becomes a GRU-type gate g(x, relu(f(x))) whose bias
  starts it near the identity, which the paper found to stabilise RL training.
* `gru` — a stack of GRUs (Cho et al. 2014).
* `ssm` — a selective diagonal linear state-space layer (the S6 layer of Mamba, Gu & Dao 2023, in
  plain PyTorch): per channel d and state n,
      h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,   y_t = C_t . h_t + D u_t,
  with delta_t, B_t, C_t functions of the input. Training evaluates the linear recurrence with a
  chunked parallel prefix scan (linear work in T); acting runs it one step at a time.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wmrl.config import BACKBONES



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


def make_backbone(kind: str, dim: int, layers: int, heads: int, max_tokens: int, gated: bool = False,
                  state_size: int = 16) -> Backbone:
    if kind == "transformer":
        return Transformer(dim, layers, heads, max_tokens, gated)
    if kind == "gru":
        return GRU(dim, layers)
    if kind == "ssm":
        return SSM(dim, layers, state_size)
    raise ValueError(f"unknown backbone {kind!r}; choose one of {', '.join(BACKBONES)}")


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


def linear_scan(a: torch.Tensor, b: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t along dim 1 with h_{-1} = 0, in O(T) work: a prefix scan inside
    chunks of `chunk` steps (all chunks at once), a prefix scan over the chunks' end states, then
    each chunk's states corrected by the state it starts from."""
    length = a.shape[1]
    pad = -length % chunk
    if pad:
        a = torch.cat([a, a.new_ones(a.shape[0], pad, *a.shape[2:])], 1)
        b = torch.cat([b, b.new_zeros(b.shape[0], pad, *b.shape[2:])], 1)
    chunks = a.shape[1] // chunk
    a, b = (x.reshape(x.shape[0], chunks, chunk, *x.shape[2:]) for x in (a, b))
    local, decay = _prefix_scan(a, b, dim=2)  # states from a zero start; products of a within chunks
    ends, _ = _prefix_scan(decay[:, :, -1], local[:, :, -1], dim=1)  # the state at each chunk's end
    starts = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], 1)
    h = local + decay * starts.unsqueeze(2)
    return h.reshape(h.shape[0], chunks * chunk, *h.shape[3:])[:, :length]


def _prefix_scan(a: torch.Tensor, b: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hillis-Steele scan of h_t = a_t h_{t-1} + b_t along `dim`: log2(n) rounds; after the round
    with offset k, (decay_t, h_t) compose the last 2k steps. Returns (h, cumulative products of a)."""
    h, decay, offset, n = b, a, 1, b.shape[dim]
    while offset < n:
        kept = n - offset
        h_back, decay_back = h.narrow(dim, 0, kept), decay.narrow(dim, 0, kept)  # step t - offset
        h = torch.cat([h.narrow(dim, 0, offset),
                       h.narrow(dim, offset, kept) + decay.narrow(dim, offset, kept) * h_back], dim)
        decay = torch.cat([decay.narrow(dim, 0, offset), decay.narrow(dim, offset, kept) * decay_back], dim)
        offset *= 2
    return h, decay


class SelectiveSSM(nn.Module):
    """One S6 layer: input-dependent step size delta_t and projections B_t, C_t; diagonal A < 0."""

    def __init__(self, dim: int, state_size: int):
        super().__init__()
        self.in_proj = nn.Linear(dim, 2 * dim)  # the SSM input u and a SiLU gate
        self.delta = nn.Linear(dim, dim)
        self.bc = nn.Linear(dim, 2 * state_size, bias=False)
        # A = -exp(A_log), initialised to -(1..N) per channel as in S4D-Real / Mamba.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state_size + 1).float()).repeat(dim, 1))
        self.D = nn.Parameter(torch.ones(dim))
        self.out = nn.Linear(dim, dim)

    def _terms(self, x):
        u, gate = self.in_proj(x).chunk(2, -1)
        delta = F.softplus(self.delta(u))  # (..., D)
        B, C = self.bc(u).chunk(2, -1)  # (..., N) each
        decay = torch.exp(delta.unsqueeze(-1) * -torch.exp(self.A_log))  # (..., D, N), in (0, 1)
        drive = (delta * u).unsqueeze(-1) * B.unsqueeze(-2)  # (..., D, N)
        return u, gate, decay, drive, C

    def _output(self, h, u, gate, C):
        y = (h * C.unsqueeze(-2)).sum(-1) + self.D * u
        return self.out(y * F.silu(gate))

    def forward(self, x):
        u, gate, decay, drive, C = self._terms(x)
        return self._output(linear_scan(decay, drive), u, gate, C)

    def step(self, x, h):
        u, gate, decay, drive, C = self._terms(x)
        h = decay * h + drive
        return self._output(h, u, gate, C), h


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
        return [torch.zeros(batch, self.dim, self.state_size, device=device) for _ in self.layers]

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
