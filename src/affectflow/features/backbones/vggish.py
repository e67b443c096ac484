"""VGGish (Hershey et al. 2017; paper 003's audio features): 128-d embeddings of 0.96 s log mel
examples, in PyTorch with the parameter names of the widely used port (harritaylor/torchvggish),
so that its ``vggish-10086976.pth`` and ``vggish_pca_params-970ea276.pth`` load with
``weights_only=True``. torchaudio 2.11 has no VGGish, hence the network and the front end here.

The front end follows the original's ``vggish_input.py``/``mel_features.py``: 16 kHz mono in
[-1, 1]; 25 ms periodic-Hann windows every 10 ms, not centred (snip edges), magnitude of a 512-point
FFT; 64 mel bands from 125 to 7500 Hz, triangles linear on the HTK mel scale (1127 ln(1 + f/700)),
no area normalisation, DC excluded; log(mel + 0.01); examples of 96 frames (0.96 s).
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

import numpy as np

from affectflow.features.base import AudioBackbone, check_positive, empty_features
from affectflow.features.registry import BACKBONES
from affectflow.features.weights import resolve_weights
from affectflow.runtime.device import pick_device
from affectflow.runtime.hashing import file_sha256

SAMPLE_RATE = 16000
WINDOW, HOP, FFT = 400, 160, 512  # samples: 25 ms, 10 ms, the next power of two
N_MELS, MEL_MIN_HZ, MEL_MAX_HZ, LOG_OFFSET = 64, 125.0, 7500.0, 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EMBEDDING_SIZE = 128
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0  # the released embeddings' 8-bit range
CONVS = (0, 3, 6, 8, 11, 13)  # indices of the convolutions in torchvggish's ``features``
POOLED = (0, 1, 3, 5)  # convolutions (by position) followed by 2x2 max pooling
LINEARS = (0, 2, 4)  # indices of the linear layers in ``embeddings``
PCA_MATRIX_NAMES = ("pca_eigen_vectors", "pca_matrix", "_pca_matrix")  # names used by ports and releases
PCA_MEANS_NAMES = ("pca_means", "_pca_means")


def mel_matrix() -> np.ndarray:
    """(FFT // 2 + 1, 64) weights from FFT magnitudes to VGGish's mel bands (mel_features.py)."""
    mel = lambda f: 1127.0 * np.log1p(np.asarray(f) / 700.0)  # noqa: E731
    bins = mel(np.linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1))
    edges = np.linspace(mel(MEL_MIN_HZ), mel(MEL_MAX_HZ), N_MELS + 2)
    lower = (bins[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    upper = (edges[None, 2:] - bins[:, None]) / (edges[2:] - edges[1:-1])
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights[0] = 0.0  # as HTK: the DC bin takes no part
    return weights


def log_mel(y: np.ndarray) -> np.ndarray:
    """(frames, 64) log mel spectrogram of a float waveform (frames = 1 + (n - 400) // 160)."""
    y = np.asarray(y, np.float64)
    n_frames = 1 + (y.size - WINDOW) // HOP
    if n_frames <= 0:
        return np.zeros((0, N_MELS))
    frames = np.lib.stride_tricks.as_strided(y, (n_frames, WINDOW), (y.strides[0] * HOP, y.strides[0]))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, FFT))
    return np.log(magnitude @ _mel_matrix() + LOG_OFFSET)


@functools.cache
def _mel_matrix() -> np.ndarray:
    return mel_matrix()


@functools.cache
def vggish_class():
    """VGGish with torchvggish's parameter names: six 3x3 convolutions (``features``), three linear
    layers (``embeddings``), the first two followed by a ReLU and none on the embedding (Google's
    model; the port adds one); widths are arguments so a tiny
    model of the same class can be built (the released one: 64, 128, 256, 256, 512, 512 and 4096)."""
    import torch
    from torch import nn

    class VGGish(nn.Module):
        def __init__(self, widths=(64, 128, 256, 256, 512, 512), hidden=4096):
            super().__init__()
            layers, channels = [], 1
            for i, width in enumerate(widths):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                layers += [nn.MaxPool2d(2, 2)] if i in POOLED else []
                channels = width
            self.features = nn.Sequential(*layers)
            flat = channels * (EXAMPLE_FRAMES // 16) * (N_MELS // 16)
            # No activation after the last layer: Google's VGGish (vggish_slim.py, fc2 with
            # activation_fn=None) has none, and its PCA was fitted on those values. torchvggish adds a
            # ReLU there, which zeroes every negative value before the PCA; the weights are the same.
            self.embeddings = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(True), nn.Linear(hidden, hidden),
                                            nn.ReLU(True), nn.Linear(hidden, EMBEDDING_SIZE))

        def forward(self, x):
            """(N, 1, 96, 64) log mel examples -> (N, 128)."""
            x = self.features(x)
            # flattened (time, frequency, channel), the TensorFlow original's order
            return self.embeddings(torch.flatten(x.permute(0, 2, 3, 1), 1))

    return VGGish


def load_vggish(path: Path):
    """The network of a torchvggish state_dict (widths read from its tensors) and its ``pproc.``
    entries (PCA parameters, if the file holds them); keys that do not fit are named."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state_dict of tensors")
    expected = [f"features.{i}.{p}" for i in CONVS for p in ("weight", "bias")]
    expected += [f"embeddings.{i}.{p}" for i in LINEARS for p in ("weight", "bias")]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not k.startswith("pproc.")]
    if missing or unexpected:
        raise ValueError(f"{path}: not a torchvggish state_dict: missing keys {missing}, unexpected keys {unexpected}")
    widths = [state[f"features.{i}.weight"].shape[0] for i in CONVS]
    model = vggish_class()(widths, hidden=state["embeddings.0.weight"].shape[0])
    try:
        model.load_state_dict({k: state[k] for k in expected})
    except RuntimeError as err:
        raise ValueError(f"{path}: does not fit VGGish: {err}") from None
    return model, {k: v for k, v in state.items() if k.startswith("pproc.")}


def pca_parameters(entries: dict, where) -> tuple[np.ndarray, np.ndarray]:
    """(128 x 128 matrix, 128 means) from a mapping with any of the names ports use for them."""
    keys = {k.removeprefix("pproc."): v for k, v in entries.items()}
    matrix = next((keys[n] for n in PCA_MATRIX_NAMES if n in keys), None)
    means = next((keys[n] for n in PCA_MEANS_NAMES if n in keys), None)
    if matrix is None or means is None:
        raise ValueError(f"{where}: no PCA parameters (expected one of {PCA_MATRIX_NAMES} and of {PCA_MEANS_NAMES}; "
                         f"found {sorted(entries)})")
    matrix, means = np.asarray(matrix, np.float64), np.asarray(means, np.float64).reshape(-1)
    if matrix.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE) or means.shape != (EMBEDDING_SIZE,):
        raise ValueError(f"{where}: PCA matrix {matrix.shape} and means {means.shape}, expected (128, 128) and 128")
    return matrix, means


def load_pca_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """PCA parameters of the TensorFlow release (``vggish_pca_params.npz``) or of torchvggish's
    ``.pth`` (a dict of numpy arrays, loaded with weights_only and only numpy's array types allowed)."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return pca_parameters(dict(data), path)
    import torch
    from numpy._core.multiarray import _reconstruct

    allowed = [_reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
               np.dtypes.Float32DType, np.dtypes.Float64DType]  # numpy 2 and numpy 1 pickles
    with torch.serialization.safe_globals(allowed):
        entries = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected a dict of PCA parameters")
    return pca_parameters(entries, path)


def postprocess(embeddings: np.ndarray, matrix: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The released embeddings' postprocessing: PCA (with whitening), clip to [-2, 2], 8-bit
    quantisation to 0..255 (vggish_postprocess.py), as float32."""
    pca = (np.asarray(embeddings, np.float64) - means) @ matrix.T
    clipped = np.clip(pca, QUANTIZE_MIN, QUANTIZE_MAX)
    return np.round((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN))).astype(np.float32)


@BACKBONES.register("vggish128")
class VGGish128(AudioBackbone):
    """VGGish embeddings (128-d) of 0.96 s log mel examples every ``hop_s`` seconds (0.96: not
    overlapping, as the original frames them), timestamped at the centre of the audio each
    describes (0.4875 s into the example's 0.975 s); audio shorter than one example gives (0, 128).

    ``postprocess`` (default on) applies the PCA and 8-bit quantisation of the released AudioSet
    embeddings and of torchvggish's default, so rows are integers 0..255 as float32; the PCA
    parameters come from ``pca`` (a manifest entry or file: torchvggish's .pth or the TensorFlow
    release's .npz) or, with ``pca: ""``, from the checkpoint's ``pproc.`` entries. Off: the
    network's raw output (the last layer has no activation, as in Google's model).
    """

    device = "auto"
    batch_size = 64  # examples per forward

    def __init__(self, *, weights: str = "vggish", postprocess: bool = True, pca: str = "vggish_pca",
                 hop_s: float = 0.96) -> None:
        check_positive("hop_s", hop_s)
        self._hop_frames = int(round(hop_s * SAMPLE_RATE / HOP))
        if self._hop_frames < 1:
            raise ValueError(f"hop_s must be at least one 10 ms frame, not {hop_s!r}")
        self.params = {"weights": weights, "postprocess": bool(postprocess), "pca": pca if postprocess else "",
                       "hop_s": float(hop_s)}
        self.dim = EMBEDDING_SIZE
        self._weights = resolve_weights(weights)
        self._pca = resolve_weights(pca) if postprocess and pca else None
        self._loaded = None

    def provenance(self) -> dict:
        """The sha256 of the checkpoint (and of the PCA file, when used); torch's version."""
        files = [self._weights] + ([self._pca] if self._pca else [])
        return {"weights_sha256": ",".join(file_sha256(p) for p in files),
                "package_version": f"torch {importlib.metadata.version('torch')} numpy {np.__version__}"}

    def _model(self):
        if self._loaded is None:
            device = pick_device(self.device)
            model, pproc = load_vggish(self._weights)
            pca = None
            if self.params["postprocess"]:
                pca = load_pca_file(self._pca) if self._pca else pca_parameters(pproc, self._weights)
            self._loaded = (model.eval().to(device), pca, device)
        return self._loaded

    def embed(self, examples: np.ndarray) -> np.ndarray:
        """(N, 96, 64) log mel examples -> (N, 128) float32 (postprocessed if asked)."""
        import torch

        model, pca, device = self._model()
        x = torch.from_numpy(np.ascontiguousarray(examples, np.float32))[:, None].to(device)
        with torch.inference_mode():
            raw = model(x).float().cpu().numpy()
        return postprocess(raw, *pca) if pca is not None else raw

    def extract(self, samples: np.ndarray, sample_rate: int):
        """(T, 128) float32 per example and the example centres (seconds)."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"vggish128 expects {SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
        mel = log_mel(samples.astype(np.float64) / 32768.0)
        if len(mel) < EXAMPLE_FRAMES:
            return empty_features(self.dim)
        starts = np.arange(0, len(mel) - EXAMPLE_FRAMES + 1, self._hop_frames)
        rows = [self.embed(np.stack([mel[s : s + EXAMPLE_FRAMES] for s in starts[i : i + self.batch_size]]))
                for i in range(0, len(starts), self.batch_size)]
        span = (EXAMPLE_FRAMES - 1) * HOP + WINDOW  # samples an example describes
        return np.concatenate(rows), (starts * HOP + span / 2) / SAMPLE_RATE
