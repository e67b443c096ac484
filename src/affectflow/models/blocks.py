"""Building blocks of the temporal models: encoders (B, T, D) -> (B, T, H), pooling and heads.

Every encoder takes a boolean validity mask (B, T) (padding at the end of each row is False) and
exposes ``out_dim``; padded steps never change the output at valid steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, H) counting only steps where ``mask`` (B, T) is true."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def last_valid(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last valid step of each row of (B, T, H) (the first step of an empty row)."""
    index = (mask.sum(1) - 1).clamp_min(0).long()
    return x[torch.arange(len(x), device=x.device), index]


class CausalConvBlock(nn.Module):
    """Dilated causal 1-D convolution, zero padded on the left only, ReLU, dropout, residual."""

    def __init__(self, in_dim: int, out_dim: int, *, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.left = (kernel - 1) * dilation
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, dilation=dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, T)
        y = self.conv(nn.functional.pad(x, (self.left, 0)))
        return self.drop(torch.relu(y)) + self.skip(x)


class TCN(nn.Module):
    """Temporal convolutional network (000, 001, 004): causal dilated convs, dilation 2**i.

    Output at step t sees inputs at steps <= t only, so trailing padding cannot leak into
    valid steps; padded inputs are zeroed anyway.
    """

    def __init__(self, input_dim: int, *, hidden: int = 128, layers: int = 5, kernel: int = 3,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if layers < 1 or kernel < 1:
            raise ValueError(f"TCN needs layers >= 1 and kernel >= 1, got layers={layers}, kernel={kernel}")
        dims = [input_dim] + [hidden] * layers
        self.blocks = nn.ModuleList(
            CausalConvBlock(dims[i], dims[i + 1], kernel=kernel, dilation=2**i, dropout=dropout)
            for i in range(layers)
        )
        self.out_dim = hidden
        self.receptive_field = 1 + (kernel - 1) * (2**layers - 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = (x * mask.unsqueeze(-1).to(x.dtype)).transpose(1, 2)
        for block in self.blocks:
            h = block(h)
        return h.transpose(1, 2)


class TemporalPositions(nn.Module):
    """Adds sinusoidal encodings of the step index (temporal positions) to (B, T, H)."""

    def __init__(self, dim: int, *, max_len: int = 10000) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if x.shape[1] + offset > len(self.table):
            raise ValueError(f"sequence of {x.shape[1]} steps exceeds max_len={len(self.table)}")
        return x + self.table[offset : offset + x.shape[1]].to(x.dtype)


def _attendable(mask: torch.Tensor) -> torch.Tensor:
    """Key padding mask (True = ignore) from a validity mask; a row with no valid step may attend
    to its first step, so attention over it gives finite (ignored) values instead of NaN."""
    padding = ~mask
    padding[:, 0] &= mask.any(1)
    return padding


class TransformerEncoder(nn.Module):
    """Linear projection to ``dim`` (if needed), temporal positions, N encoder blocks."""

    def __init__(self, input_dim: int, *, dim: int = 128, layers: int = 2, heads: int = 4,
                 ff_dim: int | None = None, dropout: float = 0.1, positions: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"transformer dim={dim} is not divisible by heads={heads}")
        self.project = nn.Linear(input_dim, dim) if input_dim != dim else nn.Identity()
        self.positions = TemporalPositions(dim) if positions else None
        block = nn.TransformerEncoderLayer(dim, heads, ff_dim or 4 * dim, dropout, batch_first=True)
        # No nested-tensor fast path: it changes numerics between padded and unpadded batches.
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.out_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.project(x)
        if self.positions is not None:
            h = self.positions(h)
        return self.encoder(h, src_key_padding_mask=_attendable(mask))


class RecurrentEncoder(nn.Module):
    """LSTM or GRU (optionally bidirectional) over the valid steps only (packed sequences).

    ``forward(..., state=h)`` starts from a carried hidden state and ``return_state=True`` also
    returns the state after each row's last valid step: the segment carry of Liu et al. 2023 (003),
    e.g. its GRU's ``g_i, h_i = GRU(f_i^m, h_{i-1})`` (the LSTM's and the Transformer->LSTM's are
    alike), "where h_i denotes the hidden states at
    the end of s_i. h_0 is initialized to be zeros."

    Only the last layer's state is carried, as the paper says of its GRU (its LSTM section says "the
    last hidden states of the previous segment", read the same way here): "the hidden states of the last layer
    are fed from the previous segment s_{i-1} into the GRU to utilize the information from the last
    segment" (Liu et al. 2023 (003), 3.3.2). The returned state is therefore the last layer's alone
    (GRU: ``(directions, B, hidden)``; LSTM: the pair ``(h, c)`` of such tensors, the cell state
    travelling with its hidden state). On the next segment the last layer starts from it and every
    lower layer starts from zeros, like ``h_0`` (the paper is silent on lower layers; zeros is our
    reading of "h_0 is initialized to be zeros"). A state of every layer, as PyTorch returns it
    (``(layers * directions, B, hidden)``), is accepted and cut to its last layer's. With one
    layer this is PyTorch's own state carry, unchanged.
    """

    def __init__(self, input_dim: int, *, cell: str = "lstm", hidden: int = 128, layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        cells = {"lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in cells:
            raise ValueError(f"unknown recurrent cell {cell!r}; known: {', '.join(cells)}")
        self.cell = cell
        self.rnn = cells[cell](input_dim, hidden, layers, batch_first=True, bidirectional=bidirectional,
                               dropout=dropout if layers > 1 else 0.0)
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.directions = 2 if bidirectional else 1
        self.layers = layers

    def last_layer(self, state):
        """The last layer's part of a recurrent state (a tensor, or LSTM's ``(h, c)`` pair)."""
        if isinstance(state, (tuple, list)):
            return tuple(self.last_layer(part) for part in state)
        if state.shape[0] == self.directions:
            return state
        if state.shape[0] != self.layers * self.directions:
            raise ValueError(f"a carried state of {state.shape[0]} layer(s) x direction(s) does not fit a "
                             f"{self.cell.upper()} of {self.layers} layer(s) x {self.directions} direction(s)")
        return state[-self.directions :]

    def initial_state(self, state):
        """The full initial state from a carried one: the last layer's carried part, zeros below it."""
        if state is None:
            return None
        if isinstance(state, (tuple, list)):
            return tuple(self.initial_state(part) for part in state)
        last = self.last_layer(state)
        if self.layers == 1:
            return last.contiguous()
        lower = last.new_zeros((self.layers - 1) * self.directions, *last.shape[1:])
        return torch.cat([lower, last], dim=0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, state=None, return_state: bool = False):
        """(B, T, D) -> (B, T, out_dim), starting from the carried ``state`` (None: zeros); with
        ``return_state``, also the last layer's state after each row's last valid step."""
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed, self.initial_state(state))
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return (h, self.last_layer(final)) if return_state else h


class AttentionPooling(nn.Module):
    """FC -> softmax over the valid positions -> weighted sum (001's aggregation)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)
        self.out_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        # An empty row would be all -inf: give it uniform weights instead of NaN.
        scores = torch.where(mask.any(1, keepdim=True), scores, torch.zeros_like(scores))
        return (torch.softmax(scores, dim=1).unsqueeze(-1) * x).sum(1)


class FFNHead(nn.Module):
    """Linear-act-...-Linear with dropout; ``hidden=()`` is a single linear layer."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden=(128,), dropout: float = 0.0,
                 activation: str = "relu") -> None:
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(f"unknown head activation {activation!r}; known: {', '.join(acts)}")
        layers: list[nn.Module] = []
        dim = in_dim
        for width in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(dim, int(width)), acts[activation]()]
            dim = int(width)
        layers += [nn.Dropout(dropout), nn.Linear(dim, out_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttention(nn.Module):
    """Each step of ``query`` attends over the valid steps of ``context`` (004), residual + norm."""

    def __init__(self, dim: int, *, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(query, context, context, key_padding_mask=_attendable(context_mask),
                                     need_weights=False)
        return self.norm(query + attended)


def modality_dropout(parts: list[torch.Tensor], *, p_m: float, p_v: float,
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """001's modality dropout on [video, audio] encodings, per sample.

    With probability ``p_m`` both are kept; otherwise video only with probability ``p_v``
    (audio zeroed), else audio only (video zeroed).
    """
    if len(parts) != 2:
        raise ValueError(f"modality dropout needs exactly 2 modalities (video, audio), got {len(parts)}")
    video, audio = parts
    batch = video.shape[0]
    u = torch.rand(batch, generator=generator).to(video.device)
    v = torch.rand(batch, generator=generator).to(video.device)
    both = u < p_m
    keep_video = both | (v < p_v)
    keep_audio = both | ~(v < p_v)
    shape = (batch,) + (1,) * (video.dim() - 1)
    return [video * keep_video.view(shape).to(video.dtype), audio * keep_audio.view(shape).to(audio.dtype)]
