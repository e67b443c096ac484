"""Single-stream temporal models: an encoder stack, a pooling (or per-frame) head, optional sigmoid.

Every registered factory takes ``input_dim``, ``output_dim`` and keyword parameters; the model's
``forward(x, mask)`` maps (B, T, D) features and a (B, T) validity mask to (B, output_dim) for clip
tasks or, with ``per_frame=True``, to (B, T, output_dim) for per-frame tasks (VA, AU).
"""

from __future__ import annotations

import torch
from torch import nn

from affectflow.models.blocks import (
    TCN,
    AttentionPooling,
    FFNHead,
    RecurrentEncoder,
    TransformerEncoder,
    last_valid,
    masked_mean,
)
from affectflow.models.registry import MODELS

POOLINGS = ("mean", "attention", "last")


class EncoderStack(nn.Module):
    """Encoders applied in turn; only the last may be recurrent (and so carry a hidden state).

    The encoders before the recurrent one see the current segment only; the carried state is the
    recurrent encoder's last layer's (see :class:`RecurrentEncoder`).
    """

    def __init__(self, encoders: list[nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.out_dim = encoders[-1].out_dim
        self.recurrent = isinstance(encoders[-1], RecurrentEncoder)

    def forward(self, x, mask, *, state=None, return_state: bool = False):
        h = x
        for encoder in self.encoders[:-1]:
            h = encoder(h, mask)
        last = self.encoders[-1]
        if self.recurrent:
            return last(h, mask, state=state, return_state=return_state)
        if state is not None:
            raise ValueError("only a model ending in an LSTM/GRU can carry a hidden state")
        h = last(h, mask)
        return (h, None) if return_state else h


class SequenceModel(nn.Module):
    """Encoder stack -> pooling over valid steps (clip tasks) or per-step (frame tasks) -> FFN head."""

    def __init__(self, encoder: EncoderStack, *, output_dim: int, pooling: str = "mean", head_hidden=(128,),
                 head_dropout: float = 0.0, head_activation: str = "relu", sigmoid: bool = True,
                 per_frame: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling = pooling
        self.per_frame = per_frame
        self.pool = AttentionPooling(encoder.out_dim) if pooling == "attention" and not per_frame else None
        self.head = FFNHead(encoder.out_dim, output_dim, hidden=tuple(head_hidden), dropout=head_dropout,
                            activation=head_activation)
        self.sigmoid = sigmoid

    @property
    def carries_state(self) -> bool:
        """Whether ``forward(..., state=...)`` can carry a hidden state across segments."""
        return self.encoder.recurrent

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, state=None, return_state: bool = False):
        h, new_state = self.encoder(x, mask, state=state, return_state=True)
        if not self.per_frame:
            if self.pool is not None:
                h = self.pool(h, mask)
            elif self.pooling == "last":
                h = last_valid(h, mask)
            else:
                h = masked_mean(h, mask)
        y = self.head(h)
        if self.sigmoid:
            y = torch.sigmoid(y)
        return (y, new_state) if return_state else y


def head_options(params: dict) -> dict:
    """The pooling and head options of a model's ``params``, removed from ``params``."""
    keys = ("pooling", "head_hidden", "head_dropout", "head_activation", "sigmoid", "per_frame")
    return {k: params.pop(k) for k in keys if k in params}


def _reject_unknown(name: str, params: dict) -> None:
    if params:
        raise TypeError(f"model {name!r}: unknown parameter(s) {sorted(params)}")


def _tcn(dim, p) -> TCN:
    return TCN(dim, hidden=p.pop("hidden", 128), layers=p.pop("tcn_layers", 5), kernel=p.pop("kernel", 3),
               dropout=p.get("dropout", 0.1))


def _transformer(dim, p, *, width=None) -> TransformerEncoder:
    return TransformerEncoder(dim, dim=width or p.pop("dim", 128), layers=p.pop("layers", 2), heads=p.pop("heads", 4),
                              ff_dim=p.pop("ff_dim", None), dropout=p.get("dropout", 0.1))


def _recurrent(dim, p, cell, bidirectional) -> RecurrentEncoder:
    return RecurrentEncoder(dim, cell=cell, hidden=p.pop("hidden", 128), layers=p.pop("rnn_layers", 1),
                            bidirectional=bidirectional, dropout=p.get("dropout", 0.0))


ENCODERS: dict = {}  # name -> build_encoders(input_dim, params) -> list of encoder modules


def build_encoder_stack(name: str, input_dim: int, params: dict) -> EncoderStack:
    """The encoder stack of model ``name`` for ``input_dim`` features; ``params`` loses the keys it used."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
    return EncoderStack(ENCODERS[name](input_dim, params))


def _factory(name: str, build_encoders):
    """Register ``name`` as a SequenceModel whose encoders come from ``build_encoders(input_dim, params)``."""

    def create(*, input_dim: int, output_dim: int, **params) -> SequenceModel:
        params = dict(params)
        head = head_options(params)
        encoders = build_encoders(input_dim, params)
        params.pop("dropout", None)
        _reject_unknown(name, params)
        return SequenceModel(EncoderStack(encoders), output_dim=output_dim, **head)

    ENCODERS[name] = build_encoders
    create.__name__ = f"create_{name.replace('@', '_')}"
    create.__doc__ = f"Temporal model {name!r} (see affectflow.models.temporal)."
    MODELS.register(name)(create)
    return create


_factory("tcn", lambda d, p: [_tcn(d, p)])
_factory("transformer", lambda d, p: [_transformer(d, p)])
_factory("lstm", lambda d, p: [_recurrent(d, p, "lstm", False)])
_factory("bilstm", lambda d, p: [_recurrent(d, p, "lstm", True)])
_factory("gru@2", lambda d, p: [_recurrent(d, p, "gru", False)])
_factory("bigru", lambda d, p: [_recurrent(d, p, "gru", True)])


def _tcn_transformer(d, p):
    tcn = _tcn(d, p)
    # 000/001: the transformer's attention dimension is its own (128), fed by the TCN's output.
    return [tcn, _transformer(tcn.out_dim, p)]


def _transformer_lstm(d, p):
    """Liu et al. 2023 (003), 3.3.4: "f_i^h = TRMEncoder(f_i^m)" (eq. 6), then "g_i, h_i =
    LSTM(f_i^h, h_{i-1})" (eq. 7), "where f_i^h denotes the last hidden layer's output of the
    Transformer encoder". The Transformer sees one segment at a time (its positions restart at
    each segment) and the LSTM carries its state from segment to segment: the model
    ``carries_state``, and a run sets ``carry_state`` (with ``segment_stride`` equal to
    ``segment_length``) for the training loop and prediction to feed the state across segments.
    """
    transformer = _transformer(d, p)
    return [transformer, _recurrent(transformer.out_dim, p, "lstm", p.pop("bidirectional", False))]


_factory("tcn_transformer", _tcn_transformer)
_factory("transformer_lstm", _transformer_lstm)


@MODELS.register("gru")
class GruRegressor(nn.Module):
    """Linear projection, one GRU layer, masked mean over time, linear head, sigmoid.

    The smallest sequence model that sees temporal order; the walking skeleton's default.
    """

    def __init__(self, *, input_dim: int, output_dim: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(2 * hidden, output_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        projected = self.project(x)
        h, _ = self.gru(projected)
        # Pool both the GRU states and the projected inputs: the mean keeps clip-level
        # statistics that a short recurrent memory would forget.
        pooled = torch.cat([masked_mean(h, mask), masked_mean(projected, mask)], dim=-1)
        return torch.sigmoid(self.head(pooled))


@MODELS.register("audio_lstm_mean")
class AudioLstmMean(nn.Module):
    """Paper 002's audio model: [global mean of the inputs ; last step of a 2-layer LSTM] ->
    Linear-tanh-Linear (the audEERING VAD head; 1027 + 1027 = 2054 wide for Wav2Vec2+VAD input).
    """

    def __init__(self, *, input_dim: int, output_dim: int, hidden: int | None = None, layers: int = 2,
                 dropout: float = 0.1, head_hidden: int | None = None, sigmoid: bool = False) -> None:
        super().__init__()
        hidden = hidden or input_dim
        self.lstm = RecurrentEncoder(input_dim, cell="lstm", hidden=hidden, layers=layers, dropout=dropout)
        width = input_dim + hidden
        self.head = FFNHead(width, output_dim, hidden=(head_hidden or width,), dropout=dropout, activation="tanh")
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([masked_mean(x, mask), last_valid(self.lstm(x, mask), mask)], dim=-1)
        y = self.head(pooled)
        return torch.sigmoid(y) if self.sigmoid else y
