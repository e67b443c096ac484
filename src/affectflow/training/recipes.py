"""Each paper's training recipe as a dict of run settings (the papers are listed in docs/methods.md).

A run in the config names one with ``recipe: <name>``; keys the run sets itself override the
recipe's. Values the paper does not state are marked ``# not stated`` and chosen conservatively.
Late fusion by predictions (Yu et al. 2024, 000) is two runs averaged by the ensemble stage
(``method: mean``).
"""

from __future__ import annotations

from copy import deepcopy
from types import MappingProxyType

_PLATEAU_HALVE_10 = {"factor": 0.5, "patience": 10}  # 000, 001: halve after 10 stale epochs
# Which validation set chooses the kept epoch (affectflow.training.monitor).
# 000 and 002 train on the official training split and report the validation split's score (000:
# "if the validation set metric does not improve for 10 epochs, the learning rate is halved"; 002:
# "early stopping", on what it does not say): they monitor that split's Pearson.
_OFFICIAL_PEARSON = {"metric": "pearson", "split": "official"}
# 001, 003 and 004 cross-validate and report a score per fold, without naming the set that chooses
# a fold's epoch (001: "when metric on the validation set don't improve for 10 epochs, the learning
# rate will halved", "We freeze the unimodal's model parameters with the highest ρ"); our reading:
# each fold's held-out part, which makes the out-of-fold score in-sample (metrics.json says so).
_HELDOUT = {"split": "heldout"}  # the task's metric: pearson (ERI), ccc (VA), f1 (AU)
# 001's per-branch temporal encoder: TCN (k=3, 5 layers) + temporal positions + Transformer (dim
# 128). Shared by the fused recipe and the unimodal branch recipe so that a trained branch fits.
_YU2023_ERI_ENCODER = {"hidden": 128, "tcn_layers": 5, "kernel": 3, "dim": 128,
                       "layers": 2,  # transformer depth not stated
                       "heads": 4}
# max_steps 32: 001's 32 video frames ("we uniformly extract 32 frames from each sample as input").
# It must not shorten the audio: the recipe's MFCC rows span 0.5 s each, so a clip up to 16 s has at
# most 32 of them and the audio branch reads them all (config/recipes/eri_yu2023.yaml).
_YU2023_ERI_TRAINING = {"loss": "mse", "optimizer": "adam", "lr": 1e-4, "batch_size": 64, "max_steps": 32,
                        "epochs": 100,  # not stated
                        "scheduler": "plateau", "scheduler_params": _PLATEAU_HALVE_10, "fold_scheme": "trainval5",
                        "monitor": _HELDOUT}

# 004's training (BCE, Adam 1e-4, StepLR x0.1 every 20 epochs, 50 epochs, sequences of 128, 7 folds)
# and its Transformer's size, which the paper does not state.
_DENG2023_TRAINING = {"task": "au", "loss": "bce", "optimizer": "adam", "lr": 1e-4,
                      "batch_size": 32,  # not stated
                      "epochs": 50, "scheduler": "step", "scheduler_params": {"step_size": 20, "gamma": 0.1},
                      "segment_length": 128, "segment_stride": 128, "fold_scheme": "train5_val2", "monitor": _HELDOUT}
_DENG2023_TRANSFORMER = {"dim": 256, "layers": 4, "heads": 4,  # widths and depth not stated
                         "per_frame": True, "sigmoid": True, "head_hidden": [256]}

# 002's network and training, shared by its validation-split run and its train+val test model.
_HALLMEN2024 = {"model": "audio_lstm_mean", "model_params": {"layers": 2, "dropout": 0.1, "sigmoid": False},
                "loss": "mse", "optimizer": "adamw", "lr": 1e-4, "batch_size": 32, "max_steps": 599, "epochs": 30,
                "scheduler": "cosine", "scheduler_params": {"warmup_epochs": 1}, "batching": "bucket"}

# 002 fine-tuned: the Wav2Vec2 VAD model as the encoder of the same head; the audio cut to 12 s. The
# LSTM's width is the encoder's output (1027), as the frozen recipe's is its features'.
_HALLMEN2024_FINETUNE = {
    **_HALLMEN2024, "model": "finetune",
    "model_params": {"encoder": "wav2vec2_vad", "temporal": "audio_lstm_mean",
                     "temporal_params": dict(_HALLMEN2024["model_params"])},
    "finetune": {"input": "audio", "window_s": 12},
}

RECIPES = MappingProxyType({
    # 000 Yu et al. 2024, EMI: TCN (k=3, 5 layers) -> Transformer (2 blocks, 4 heads, attention
    # dim 128) -> FFN, MSE, Adam 3e-5, batch 128, T = 300, lr halved after 10 stale epochs.
    "yu2024_emi_visual": {
        "model": "tcn_transformer",
        "model_params": {"hidden": 128, "tcn_layers": 5, "kernel": 3, "dim": 128, "layers": 2, "heads": 4,
                         "pooling": "mean", "head_hidden": [128], "sigmoid": False},
        "loss": "mse", "optimizer": "adam", "lr": 3e-5, "batch_size": 128, "max_steps": 300,
        "epochs": 100,  # not stated
        "scheduler": "plateau", "scheduler_params": _PLATEAU_HALVE_10,
        "fold_scheme": "official", "monitor": _OFFICIAL_PEARSON,
    },
    # 000's audio branch: TCN -> FFN.
    "yu2024_emi_audio": {
        "model": "tcn",
        "model_params": {"hidden": 128, "tcn_layers": 5, "kernel": 3, "pooling": "mean", "head_hidden": [128],
                         "sigmoid": False},
        "loss": "mse", "optimizer": "adam", "lr": 3e-5, "batch_size": 128, "max_steps": 300,
        "epochs": 100,  # not stated
        "scheduler": "plateau", "scheduler_params": _PLATEAU_HALVE_10,
        "fold_scheme": "official", "monitor": _OFFICIAL_PEARSON,
    },
    # 001 Yu et al. 2023, ERI: per-branch TCN + temporal positions + Transformer (dim 128), fused
    # by modality dropout (p_m 0.9, p_v 0.5), concat + LayerNorm + Linear, attention pooling,
    # sigmoid; MSE, Adam 1e-4, batch 64, 32 frames, halve after 10 stale epochs, 5-fold train+val.
    # The branches are trained first (yu2023_eri_branch) and loaded frozen: run keys
    # init_branches / freeze_branches (affectflow.training.branch_init).
    "yu2023_eri": {
        "model": "fusion",
        "model_params": {"fusion": "late_encoders", "encoder": "tcn_transformer", **_YU2023_ERI_ENCODER,
                         "fusion_dim": 128, "modality_dropout": {"p_m": 0.9, "p_v": 0.5},
                         "pooling": "attention", "head_hidden": [], "sigmoid": True},
        **_YU2023_ERI_TRAINING,
    },
    # 001's unimodal branch, trained first on one modality: the same encoder, attention pooling,
    # Linear, sigmoid (the branch head is not stated; the fused head's form is reused).
    "yu2023_eri_branch": {
        "model": "tcn_transformer",
        "model_params": {**_YU2023_ERI_ENCODER, "pooling": "attention", "head_hidden": [], "sigmoid": True},
        **_YU2023_ERI_TRAINING,
    },
    # 001's visual branch fine-tuned end to end from face crops (issue 15): the first stages of an
    # AffectNet ResNet18 ("trained on AffectNet as initialization parameter"; the run's backbone
    # entry's weights), the feature map's tokens with learnable positions through a spatial
    # Transformer (dim 256, 4 blocks, 4 heads) and attention pooling per frame, then the branch's
    # temporal encoder (TCN + Transformer) and head over "32 frames from each sample"; all trained.
    "yu2023_eri_visual": {
        "model": "finetune",
        "model_params": {"encoder": "resnet18_spatial",
                         "encoder_params": {"image_size": 112, "spatial_layers": 4, "spatial_heads": 4},
                         "temporal": "tcn_transformer",
                         "temporal_params": {**_YU2023_ERI_ENCODER, "pooling": "attention", "head_hidden": [],
                                             "sigmoid": True}},
        "finetune": {"input": "crops", "frames": 32, "size": 112},
        **_YU2023_ERI_TRAINING,
    },
    # 002 Hallmen et al. 2024, EMI audio: Wav2Vec2 (1027-d) -> [mean ; last step of a 2-layer
    # LSTM, dropout 0.1] -> Linear-tanh-Linear; AdamW 1e-4, cosine with 1 warm-up epoch, 30 epochs,
    # early stopping, batch 32, MSE, 12 s (599 Wav2Vec2 frames), length-bucketed batches. Trained on
    # the official training split and chosen on the validation split, whose Pearson the paper
    # reports (Table 1, "Ours train (w/ Dropout)": .389).
    "hallmen2024_emi": {
        **_HALLMEN2024,
        "early_stopping": 5,  # patience not stated
        "fold_scheme": "official", "monitor": _OFFICIAL_PEARSON,
    },
    # 002's test model: "the highest scores are achieved by training the model on a combined dataset
    # of training and validation sets" (Table 1: .522 test, .554 with "longer Training"). No clip is
    # left to validate on and the paper gives neither when it stopped nor how much longer it trained:
    # it trains the stated 30 epochs.
    "hallmen2024_emi_trainval": {**_HALLMEN2024, "fold_scheme": "mix"},
    # 002 as the paper trains it: "we unfreeze the Wav2Vec 2.0 model together with the pre-trained VAD
    # module" (Table 1: .262 frozen, .386 unfrozen on validation). The VAD model (the run's backbone
    # entry's weights) per 20 ms frame, the same LSTM + global mean head, on the first 12 s of audio.
    "hallmen2024_emi_finetune": {
        **_HALLMEN2024_FINETUNE,
        "early_stopping": 5,  # patience not stated
        "fold_scheme": "official", "monitor": _OFFICIAL_PEARSON,
    },
    "hallmen2024_emi_finetune_trainval": {**_HALLMEN2024_FINETUNE, "fold_scheme": "mix"},
    # 003 Liu et al. 2023, VA per frame: Transformer (dim 1024, 4 layers, 4 heads, dropout 0.3),
    # head {512, 256} dropout 0.1, segments of 150, loss 1 - CCC summed over V and A, Adam, 30
    # epochs, 6 folds (train in 5 + val).
    "liu2023_va_transformer": {
        "model": "transformer",
        "model_params": {"dim": 1024, "layers": 4, "heads": 4, "dropout": 0.3, "head_hidden": [512, 256],
                         "head_dropout": 0.1, "per_frame": True, "sigmoid": False},
        "task": "va", "loss": "ccc", "optimizer": "adam", "lr": 1e-4,  # lr not stated
        "batch_size": 32,  # not stated
        "epochs": 30, "segment_length": 150, "segment_stride": 150, "fold_scheme": "train5_val", "monitor": _HELDOUT,
    },
    # 003's recurrent variant: early fusion (concatenation, then one fully connected layer, eq. 1;
    # its width is not stated) into a GRU carrying its last layer's hidden state across consecutive
    # segments (3.3.2: "the hidden states of the last layer are fed from the previous segment"). It fuses
    # modalities: a run names the others in fuse_with.
    "liu2023_va_gru": {
        "model": "fusion",
        "model_params": {"fusion": "early", "encoder": "gru@2", "fusion_dim": 512,  # width not stated
                         "hidden": 512, "rnn_layers": 2,  # not stated
                         "head_hidden": [512, 256], "head_dropout": 0.1, "per_frame": True, "sigmoid": False},
        "task": "va", "loss": "ccc", "optimizer": "adam", "lr": 1e-4, "batch_size": 32, "epochs": 30,
        "segment_length": 150, "segment_stride": 150, "carry_state": True, "fold_scheme": "train5_val",
        "monitor": _HELDOUT,
    },
    # 003's Transformer -> LSTM: the Transformer sees one segment at a time (eq. 6), the LSTM carries
    # its last layer's state across segments (eq. 7).
    "liu2023_va_transformer_lstm": {
        "model": "transformer_lstm",
        "model_params": {"dim": 1024, "layers": 4, "heads": 4, "dropout": 0.3, "hidden": 512,
                         "head_hidden": [512, 256], "head_dropout": 0.1, "per_frame": True, "sigmoid": False},
        "task": "va", "loss": "ccc", "optimizer": "adam", "lr": 1e-4, "batch_size": 32, "epochs": 30,
        "segment_length": 150, "segment_stride": 150, "carry_state": True, "fold_scheme": "train5_val",
        "monitor": _HELDOUT,
    },
    # 004 Deng et al. 2023, AU per frame: TCN + Transformer (best single model), sequences of 128,
    # BCE, Adam 1e-4, StepLR x0.1 every 20 epochs, 50 epochs, 7 folds (train in 5 + val in 2).
    "deng2023_au": {
        "model": "tcn_transformer",
        "model_params": {"hidden": 256, "tcn_layers": 5, "kernel": 3, **_DENG2023_TRANSFORMER},
        **_DENG2023_TRAINING,
    },
    # 004's plain Transformer (Table 6: ires100, mae, densenet, wav2vec: .554).
    "deng2023_au_transformer": {
        "model": "transformer",
        "model_params": dict(_DENG2023_TRANSFORMER),
        **_DENG2023_TRAINING,
    },
    # 004's Dual Transformer ("we use a dual transformer structure to process audio and visual
    # separately"): a Transformer encoder per features key, encodings concatenated (Table 5:
    # ires100, ecapatdnn: .526).
    "deng2023_au_dual": {
        "model": "dual_transformer",
        "model_params": {**_DENG2023_TRANSFORMER, "fusion_dim": 256},  # width not stated
        **_DENG2023_TRAINING,
    },
})


def recipe(name: str) -> dict:
    """A deep copy of recipe ``name``; an unknown name fails listing the known ones."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return deepcopy(RECIPES[name])


def resolve_run(run: dict) -> dict:
    """The run's settings with its recipe (if any) underneath: run keys win, model_params merge."""
    run = deepcopy(dict(run))
    name = run.pop("recipe", None)
    if name is None:
        return run
    base = recipe(name)
    params = {**base.get("model_params", {}), **run.pop("model_params", {})}
    return {**base, **run, "model_params": params}
