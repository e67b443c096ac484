"""Tests of the training loop: determinism, resume after a kill, schedules, early stopping,
clipping, guards, length-bucketed batches, segments; and a learning test per model family."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from affectflow.metrics import ccc_per_target, mean_f1, mean_pearson
from affectflow.training import checkpoints
from affectflow.training.batching import length_batches, padding_fraction, random_batches, segments, subsample
from affectflow.training.inference import predict
from affectflow.training.loop import Interrupted, Trainer, fit
from affectflow.training.schedules import Schedule, create_optimizer
from affectflow.training.sequences import Example
from affectflow.training.settings import TrainSettings, settings_from_run

CPU_BUDGET_S = 15.0  # CPU seconds per learning test (one thread); ~2-5 s on an idle box


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and CPU time stays honest under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clip_data(n, rng, d=8, k=3, lengths=(8, 24)):
    """Clip targets = sigmoid(mean over time of the first k features); the rest is noise."""
    xs, ys = [], []
    for _ in range(n):
        steps = int(rng.integers(*lengths))
        latent = rng.normal(0, 1, k)
        x = np.concatenate([latent + rng.normal(0, 0.5, (steps, k)), rng.normal(0, 1, (steps, d - k))], 1)
        xs.append(x.astype(np.float32))
        ys.append(1 / (1 + np.exp(-x[:, :k].mean(0))))
    return xs, np.array(ys, np.float32)


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(0)
    train, test = clip_data(96, rng), clip_data(60, rng)
    return [Example.make(x, y) for x, y in zip(*train, strict=True)], test


@pytest.fixture(scope="module")
def few(clips):
    """A smaller set for the tests of the loop's mechanics."""
    train, (xt, yt) = clips
    return train[:40], (xt[:10], yt[:10])


def quick(**kw) -> TrainSettings:
    base = dict(model="tcn", model_params={"hidden": 16, "tcn_layers": 2, "dropout": 0.2}, epochs=3, lr=3e-3,
                batch_size=16, seed=5)
    return TrainSettings(**{**base, **kw})


def predictions(model, settings, xs):
    return np.stack(predict(model, [torch.from_numpy(x) for x in xs], settings=settings))


def test_same_config_gives_identical_predictions(few):
    train, (xt, _) = few
    s = quick(scheduler="cosine")
    a = predictions(fit(s, train, input_dim=8, output_dim=3)[0], s, xt)
    b = predictions(fit(s, train, input_dim=8, output_dim=3)[0], s, xt)
    np.testing.assert_array_equal(a, b)
    c = predictions(fit(quick(seed=6), train, input_dim=8, output_dim=3)[0], s, xt)
    assert not np.allclose(a, c)


def test_killed_run_resumes_to_the_uninterrupted_result(few, tmp_path):
    train, (xt, _) = few
    s = quick(epochs=5, scheduler="plateau", scheduler_params={"patience": 1}, early_stopping=3,
              val_fraction=0.0)
    ref_model, ref_history = fit(s, train, input_dim=8, output_dim=3)
    reference = predictions(ref_model, s, xt)

    ckpt = tmp_path / "checkpoint.pt"

    def kill_after_epoch_2(epoch, history):
        if epoch == 2:
            raise Interrupted("killed")

    with pytest.raises(Interrupted):
        fit(s, train, input_dim=8, output_dim=3, checkpoint=ckpt, callback=kill_after_epoch_2)
    saved = checkpoints.load(ckpt)  # weights_only=True
    assert saved["epoch"] == 3 and len(saved["history"]["train_loss"]) == 3
    seen = []
    model, history = fit(s, train, input_dim=8, output_dim=3, checkpoint=ckpt,
                         callback=lambda epoch, h: seen.append(epoch))
    assert seen == [3, 4]  # only the remaining epochs ran
    np.testing.assert_array_equal(predictions(model, s, xt), reference)
    assert history["train_loss"] == ref_history["train_loss"]
    # a checkpoint of other settings is not resumed from
    other = quick(epochs=5, lr=1e-3)
    seen.clear()
    fit(other, train, input_dim=8, output_dim=3, checkpoint=ckpt, callback=lambda epoch, h: seen.append(epoch))
    assert seen == [0, 1, 2, 3, 4]


def test_checkpoint_refuses_pickled_objects(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        checkpoints.load(tmp_path / "pickled.pt")


def lrs(name, epochs, steps, monitored=None, **params):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = create_optimizer("adam", [param], lr=1.0)
    schedule = Schedule(name, opt, epochs=epochs, steps_per_epoch=steps, **params)
    per_epoch, per_step = [], []
    for epoch in range(epochs):
        for _ in range(steps):
            per_step.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.batch_end()
        schedule.epoch_end(monitored[epoch] if monitored else 0.0)
        per_epoch.append(opt.param_groups[0]["lr"])
    return per_epoch, per_step


def test_plateau_halves_after_ten_stale_epochs():
    per_epoch, _ = lrs("plateau", 30, 1, monitored=[1.0] + [1.0] * 29)
    # best at epoch 0; PyTorch's patience=10 halves once more than 10 epochs were stale
    assert per_epoch[:11] == [1.0] * 11 and per_epoch[11] == 0.5
    assert per_epoch[22] == 0.25


def test_cosine_with_one_warmup_epoch():
    _, per_step = lrs("cosine", 5, 4, warmup_epochs=1)
    np.testing.assert_allclose(per_step[:4], [0.25, 0.5, 0.75, 1.0])
    expected = [0.5 * (1 + np.cos(np.pi * i / 16)) for i in range(16)]
    np.testing.assert_allclose(per_step[4:], expected, rtol=1e-6)


def test_step_lr_every_twenty_epochs():
    per_epoch, _ = lrs("step", 50, 1, step_size=20, gamma=0.1)
    np.testing.assert_allclose([per_epoch[18], per_epoch[19], per_epoch[39], per_epoch[49]], [1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="known: none, plateau, cosine, step"):
        lrs("exponential", 1, 1)


def test_early_stopping_keeps_the_best_epoch(few):
    train, _ = few
    rng = np.random.default_rng(3)
    val = [Example.make(rng.normal(size=(10, 8)), rng.uniform(size=3)) for _ in range(20)]  # unlearnable
    s = quick(epochs=40, early_stopping=2, lr=1e-2)
    model, history = fit(s, train, val=val, input_dim=8, output_dim=3)
    best = history["best_epoch"]
    assert history["epochs_run"] == best + 3 < 40
    assert min(history["monitored"]) == history["monitored"][best]
    trainer = Trainer(s, input_dim=8, output_dim=3)
    trainer.model.load_state_dict(model.state_dict())
    assert trainer.evaluate_loss(val) == pytest.approx(history["monitored"][best], rel=1e-5)


def test_gradient_clipping_limits_the_update(few):
    train, _ = few
    s = quick(epochs=1, optimizer="adam", lr=0.1, model_params={"hidden": 8, "tcn_layers": 1, "dropout": 0.0})
    start = Trainer(s, input_dim=8, output_dim=3).model.state_dict()

    def moved(settings):
        model, _ = fit(settings, train[:16], input_dim=8, output_dim=3)
        return max((model.state_dict()[k] - start[k]).abs().max().item() for k in start)

    # Adam's step is ~lr for any gradient scale unless the gradient is far below its epsilon
    assert moved(s) > 0.05
    assert moved(quick(**{**s.__dict__, "grad_clip": 1e-12})) < 1e-3


def test_non_finite_loss_stops_before_the_optimiser():
    bad = [Example.make(np.full((5, 8), np.nan), np.full(3, 0.5)) for _ in range(4)]
    with pytest.raises(FloatingPointError, match="epoch 0 batch 0"):
        fit(quick(epochs=1), bad, input_dim=8, output_dim=3)


def test_amp_only_on_cuda():
    assert not Trainer(quick(amp=True), input_dim=8, output_dim=3, device="cpu").amp


def test_length_batches_cover_everything_with_little_padding():
    rng = np.random.default_rng(1)
    # long-tailed like Hume-Vidmimic2's clip lengths (mean ~7 s, up to minutes), in 50 Hz frames
    lengths = np.clip(rng.lognormal(np.log(300), 0.8, 8000), 5, 60000).astype(int)
    g = torch.Generator().manual_seed(0)
    batches = length_batches(lengths, 32, generator=g)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(8000)) and max(len(b) for b in batches) == 32
    bucketed = padding_fraction(batches, lengths)
    naive = padding_fraction(random_batches(8000, 32, generator=g), lengths)
    assert bucketed <= 0.05 < 0.3 < naive
    # by hand for a tiny case: [2, 4] and [6] padded -> (2 + 4 + 6) / (4 + 4 + 6)
    assert padding_fraction([[0, 1], [2]], [2, 4, 6]) == pytest.approx(1 - 12 / 14)
    # shuffled: another epoch gives another order of batches
    assert length_batches(lengths, 32, generator=g) != batches


def test_segments_and_subsample():
    assert segments(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert segments(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert segments(3, 150) == [(0, 3)] and segments(0, 5) == []
    with pytest.raises(ValueError, match="skip"):
        segments(10, 4, 5)
    seq = np.arange(100)[:, None]
    assert subsample(seq, 5)[:, 0].tolist() == [0, 25, 50, 74, 99]
    assert len(subsample(seq[:3], 5)) == 3


def test_settings_from_run_with_recipe_and_unknown_keys():
    s = settings_from_run({"backbone": "w2v", "recipe": "hallmen2024_emi", "model": "audio_lstm_mean",
                           "epochs": 2}, seed=4)
    assert (s.optimizer, s.scheduler, s.epochs, s.seed, s.batching) == ("adamw", "cosine", 2, 4, "bucket")
    with pytest.raises(ValueError, match="lr_decay"):
        settings_from_run({"model": "gru", "lr_decay": 0.1})
    # the config's seed applies when the run sets none; without one, TrainSettings' own default
    assert settings_from_run({"backbone": "v", "model": "gru"}, seed=9).seed == 9
    assert settings_from_run({"backbone": "v", "model": "gru"}).seed == TrainSettings(model="gru").seed
    # what the run reads (features, branches) is not a setting
    branches = settings_from_run({"backbone": "v", "fuse_with": ["a"], "model": "fusion",
                                  "init_branches": ["x", None], "freeze_branches": True})
    assert branches.model == "fusion" and branches.model_params == {}


def test_the_tasks_a_run_may_train_are_the_data_sets_and_the_generic_clip_task():
    from affectflow.tasks import TASKS
    from affectflow.training.settings import CLIP_TASKS, FRAME_TASKS

    assert CLIP_TASKS == ("clip", "emi", "eri") and FRAME_TASKS == ("va", "au")
    assert set(CLIP_TASKS + FRAME_TASKS) == {"clip", *TASKS}
    with pytest.raises(ValueError, match="task 'xyz'; known: clip, emi, eri, va, au"):
        TrainSettings(model="gru", task="xyz")


# -- learning tests: a planted signal per model family -------------------------------------------

CLIP_FAMILIES = {
    "tcn": {"hidden": 32, "tcn_layers": 3},
    "transformer": {"dim": 32, "layers": 1, "heads": 2, "dropout": 0.0},
    "lstm": {"hidden": 32},
    "bigru": {"hidden": 32},
    "tcn_transformer": {"hidden": 32, "tcn_layers": 3, "dim": 32, "layers": 1, "heads": 2, "dropout": 0.0},
    "transformer_lstm": {"dim": 32, "layers": 1, "heads": 2, "hidden": 32, "dropout": 0.0},
    "audio_lstm_mean": {"hidden": 16, "layers": 1, "dropout": 0.0, "sigmoid": True},
    "fusion": {"modality_dims": [3, 5], "encoder": "tcn", "hidden": 32, "tcn_layers": 2, "fusion_dim": 32,
               "modality_dropout": {"p_m": 0.9, "p_v": 0.5}},
    "dual_transformer": {"modality_dims": [3, 5], "dim": 32, "layers": 1, "heads": 2, "fusion_dim": 32,
                         "dropout": 0.0},
    "cross_attention_transformer": {"modality_dims": [3, 5], "dim": 32, "layers": 1, "heads": 2, "dropout": 0.0},
}


@pytest.mark.parametrize("name", sorted(CLIP_FAMILIES))
def test_clip_model_learns_planted_signal(name, clips):
    train, (xt, yt) = clips
    s = TrainSettings(model=name, model_params=CLIP_FAMILIES[name], epochs=8, lr=3e-3, batch_size=16, seed=0)
    start = time.process_time()
    model, _ = fit(s, train, input_dim=8, output_dim=3)
    assert time.process_time() - start < CPU_BUDGET_S
    assert mean_pearson(yt, predictions(model, s, xt), ["a", "b", "c"]) >= 0.9


def frame_data(n, rng, *, kind, steps=(20, 40)):
    """VA: targets = tanh of a moving average of two features (-5 on some frames); AU: 4 labels =
    feature > 0 with some -1 frames."""
    xs, ys = [], []
    for _ in range(n):
        t = int(rng.integers(*steps))
        x = rng.normal(0, 1, (t, 6)).astype(np.float32)
        if kind == "va":
            smooth = np.zeros((t, 2))
            for i in range(t):  # an exponential moving average: the label needs the past
                smooth[i] = 0.6 * (smooth[i - 1] if i else 0) + 0.4 * x[i, :2]
            y = np.tanh(1.5 * smooth)
            y[rng.random(t) < 0.1] = -5
        else:
            y = (x[:, :4] > 0).astype(np.float32)
            y[rng.random(t) < 0.1] = -1
        xs.append(x)
        ys.append(y.astype(np.float32))
    return xs, ys


@pytest.mark.parametrize("name,params,extra", [
    ("gru@2", {"hidden": 16, "per_frame": True, "sigmoid": False}, {"carry_state": True, "segment_length": 10}),
    ("lstm", {"hidden": 16, "per_frame": True, "sigmoid": False}, {"segment_length": 0}),
])
def test_per_frame_va_learns_with_masks_and_segments(name, params, extra):
    rng = np.random.default_rng(1)
    train, test = frame_data(32, rng, kind="va"), frame_data(12, rng, kind="va")
    s = TrainSettings(model=name, model_params=params, task="va", loss="ccc", epochs=10, lr=1e-2,
                      batch_size=8, seed=0, **extra)
    start = time.process_time()
    model, _ = fit(s, [Example.make(x, y, task="va") for x, y in zip(*train, strict=True)], input_dim=6, output_dim=2)
    assert time.process_time() - start < CPU_BUDGET_S
    pred = np.concatenate(predict(model, [torch.from_numpy(x) for x in test[0]], settings=s))
    truth = np.concatenate(test[1])
    valid = (truth != -5).all(1)  # the -5 frames are not scored either
    scores = ccc_per_target(truth[valid], pred[valid], ["valence", "arousal"])
    assert np.mean(list(scores.values())) >= 0.9


def test_per_frame_au_learns_with_bce_and_segments():
    rng = np.random.default_rng(2)
    train, test = frame_data(32, rng, kind="au"), frame_data(12, rng, kind="au")
    s = TrainSettings(model="tcn_transformer", model_params={"hidden": 16, "tcn_layers": 2, "dim": 16, "layers": 1,
                                                             "heads": 2, "per_frame": True, "sigmoid": True},
                      task="au", loss="bce", loss_params={"pos_weight": [1.0, 1.0, 1.0, 1.0]}, epochs=8, lr=3e-3,
                      batch_size=8, seed=0, segment_length=16, segment_stride=8)
    start = time.process_time()
    model, _ = fit(s, [Example.make(x, y, task="au") for x, y in zip(*train, strict=True)], input_dim=6, output_dim=4)
    assert time.process_time() - start < CPU_BUDGET_S
    pred = np.concatenate(predict(model, [torch.from_numpy(x) for x in test[0]], settings=s))
    truth = np.concatenate(test[1])
    valid = (truth != -1).all(1)
    assert mean_f1(truth[valid], pred[valid], ["AU1", "AU2", "AU4", "AU6"]) >= 0.9


def test_spatial_attention_resnet18_learns_from_frames():
    """001's frame model: the target is the brightness of a central patch of each clip's frames."""
    rng = np.random.default_rng(0)

    def data(n):
        xs, ys = [], []
        for _ in range(n):
            a = rng.uniform(-1, 1)
            frames = rng.normal(0, 0.3, (int(rng.integers(2, 4)), 3, 32, 32)).astype(np.float32)
            frames[:, :, 8:24, 8:24] += a
            xs.append(frames)
            ys.append([1 / (1 + np.exp(-2 * a))])
        return xs, np.array(ys, np.float32)

    (xs, ys), (xt, yt) = data(64), data(24)
    s = TrainSettings(model="spatial_attention_resnet18",
                      model_params={"image_size": 32, "spatial_layers": 1, "layers": 1, "dim": 32, "tcn_layers": 2,
                                    "dropout": 0.0}, epochs=6, lr=1e-3, batch_size=16, seed=0)
    start = time.process_time()
    model, _ = fit(s, [Example.make(x, y) for x, y in zip(xs, ys, strict=True)], input_dim=3, output_dim=1)
    assert time.process_time() - start < CPU_BUDGET_S
    assert mean_pearson(yt, predictions(model, s, xt), ["intensity"]) >= 0.9
