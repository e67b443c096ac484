"""Validation-driven training (a run's ``monitor``): the kept epoch is the best on the monitored
validation metric, the plateau schedule and early stopping follow it, the fold records it, the
learning curves show it, and a run without one trains exactly as before."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import test_report_plots as report_plots  # the report's figure checks, run on the monitored figure
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from test_train_loop import one_thread  # noqa: F401  (autouse: one intra-op thread, as the loop tests)

from affectflow.config.runs import check_runs
from affectflow.data.folds import group_keys
from affectflow.h5store import ShardWriter
from affectflow.report.curves import history_table, learning_curves_figure, read_history, write_learning_curves
from affectflow.scoring import score_arrays
from affectflow.training import checkpoints
from affectflow.training.fold import _holdout, train_fold
from affectflow.training.inference import predict
from affectflow.training.loop import Interrupted, Trainer, fit
from affectflow.training.monitor import Monitor, parse_monitor, validation_score
from affectflow.training.predict import predict_fold
from affectflow.training.schedules import Schedule, create_optimizer
from affectflow.training.sequences import Example
from affectflow.training.settings import TrainSettings

D, K = 8, 3
TARGETS = ["a", "b", "c"]
PEARSON_INNER = {"metric": "pearson", "split": "inner"}




def clip(rng, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """A clip whose targets are sigmoid(mean over time of its first K features) plus label noise."""
    steps = int(rng.integers(6, 16))
    latent = rng.normal(0, 1, K)
    x = np.concatenate([latent + rng.normal(0, 0.5, (steps, K)), rng.normal(0, 1, (steps, D - K))], 1)
    y = 1 / (1 + np.exp(-x[:, :K].mean(0))) + rng.normal(0, noise, K)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.fixture(scope="module")
def overfitting():
    """Few training clips with noisy labels and clean validation clips: a 64-wide GRU at lr 0.01
    learns the signal in a few epochs, then memorises the noise and its validation Pearson falls."""
    rng = np.random.default_rng(0)
    train = [Example.make(*clip(rng, 0.3)) for _ in range(12)]
    val = [Example.make(*clip(rng, 0.0)) for _ in range(40)]
    return train, val


def memoriser(**kw) -> TrainSettings:
    base = dict(model="gru", model_params={"hidden": 64, "dropout": 0.0}, epochs=30, lr=0.01, batch_size=4, seed=0,
                monitor=PEARSON_INNER)
    return TrainSettings(**{**base, **kw})


def plateau_lrs(values: list[float], mode: str, patience: int, lr: float) -> list[float]:
    """The learning rate during each epoch under ReduceLROnPlateau (factor 0.5, relative threshold 1e-4)
    fed ``values``, as the history records it (before the epoch's own value is seen)."""
    best, bad, out = None, 0, [lr]
    for v in values:
        better = best is None or (v > best * (1 + 1e-4) if mode == "max" else v < best * (1 - 1e-4))
        best, bad = (v, 0) if better else (best, bad + 1)
        if bad > patience:
            lr, bad = lr * 0.5, 0
        out.append(lr)
    return out[:-1]


def test_the_kept_epoch_is_the_best_on_data_that_overfits(overfitting):
    train, val = overfitting
    s = memoriser(scheduler="plateau", scheduler_params={"patience": 3})
    model, history = fit(s, train, val=val, input_dim=D, output_dim=K)
    monitored = history["monitored"]
    best = history["best_epoch"]
    assert history["epochs_run"] == 30 and len(monitored) == 30
    assert best == int(np.nanargmax(monitored)) and history["best_score"] == monitored[best]
    # the model overfits: its last epoch scores well below its best
    assert monitored[best] > monitored[-1] + 0.1
    # the returned weights are the best epoch's: their validation Pearson is the best epoch's, not the last's
    trainer = Trainer(s, input_dim=D, output_dim=K)
    trainer.model.load_state_dict(model.state_dict())
    kept = trainer.evaluate_score(val, "pearson")
    assert kept == pytest.approx(monitored[best], abs=1e-6)
    assert kept > monitored[-1]
    # ... and the Pearson of the predictions, scored as any prediction is
    pred = np.stack(predict(model, [e.x for e in val], settings=s))
    truth = np.stack([e.y.numpy() for e in val])
    assert score_arrays("pearson", truth, pred, TARGETS)["mean"] == pytest.approx(kept, abs=1e-6)
    assert history["monitor"] == {"metric": "pearson", "split": "inner", "fraction": 0.1}
    # the plateau schedule halves the rate when the Pearson stops rising (mode max), not when it rises
    assert history["lr"] == pytest.approx(plateau_lrs(monitored, "max", 3, 0.01))
    assert history["lr"] != pytest.approx(plateau_lrs(monitored, "min", 3, 0.01))


def test_early_stopping_follows_the_metric(overfitting):
    train, val = overfitting
    model, history = fit(memoriser(early_stopping=3), train, val=val, input_dim=D, output_dim=K)
    best = history["best_epoch"]
    assert history["epochs_run"] == best + 4 < 30
    assert max(history["monitored"]) == history["monitored"][best]


def test_plateau_schedule_compares_as_its_mode_says():
    def lrs(mode, values):
        opt = create_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        schedule = Schedule("plateau", opt, epochs=len(values), steps_per_epoch=1, monitor_mode=mode, patience=1)
        out = []
        for v in values:
            schedule.epoch_end(v)
            out.append(opt.param_groups[0]["lr"])
        return out

    rising = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert lrs("max", rising) == [1.0] * 5  # a rising Pearson is progress
    assert lrs("min", rising) == [1.0, 1.0, 0.5, 0.5, 0.25]  # a rising loss is not


def test_a_killed_monitored_run_resumes_to_the_uninterrupted_result(overfitting, tmp_path):
    train, val = overfitting
    s = memoriser(epochs=8, scheduler="plateau", scheduler_params={"patience": 1})
    ref_model, ref_history = fit(s, train, val=val, input_dim=D, output_dim=K)
    ckpt = tmp_path / "checkpoint.pt"

    def kill_after_epoch_4(epoch, history):
        if epoch == 4:
            raise Interrupted("killed")

    with pytest.raises(Interrupted):
        fit(s, train, val=val, input_dim=D, output_dim=K, checkpoint=ckpt, callback=kill_after_epoch_4)
    saved = checkpoints.load(ckpt)
    assert saved["epoch"] == 5 and saved["best_state"] is not None
    seen = []
    model, history = fit(s, train, val=val, input_dim=D, output_dim=K, checkpoint=ckpt,
                         callback=lambda epoch, h: seen.append(epoch))
    assert seen == [5, 6, 7]
    xs = [e.x for e in val]
    np.testing.assert_array_equal(np.stack(predict(model, xs, settings=s)),
                                  np.stack(predict(ref_model, xs, settings=s)))
    assert history == ref_history


def test_a_loss_monitor_keeps_the_lowest_validation_loss(overfitting):
    train, val = overfitting
    s = memoriser(monitor={"metric": "loss", "split": "inner"})
    model, history = fit(s, train, val=val, input_dim=D, output_dim=K)
    best = history["best_epoch"]
    assert best == int(np.argmin(history["monitored"])) < 29
    trainer = Trainer(s, input_dim=D, output_dim=K)
    trainer.model.load_state_dict(model.state_dict())
    assert trainer.evaluate_loss(val) == pytest.approx(history["monitored"][best], rel=1e-5)
    # without a monitor (and without early stopping) the last epoch is kept, as before
    plain = memoriser(monitor={})
    model, history = fit(plain, train, val=val, input_dim=D, output_dim=K)
    trainer.model.load_state_dict(model.state_dict())
    assert trainer.evaluate_loss(val) == pytest.approx(history["monitored"][-1], rel=1e-5)
    assert "monitor" not in history and "best_score" not in history


def test_a_monitor_needs_validation_examples(overfitting):
    train, _ = overfitting
    with pytest.raises(ValueError, match="needs validation examples"):
        fit(memoriser(epochs=1), train, input_dim=D, output_dim=K)
    constant = [Example.make(np.ones((5, D)), np.full(K, 0.5)) for _ in range(4)]
    seen = []
    with pytest.raises(ValueError, match="no target with two distinct labels"):
        fit(memoriser(epochs=1), train, val=constant, input_dim=D, output_dim=K, callback=lambda e, h: seen.append(e))
    assert seen == []  # before the first epoch


def test_a_per_frame_monitor_scores_every_labelled_step():
    rng = np.random.default_rng(1)

    def track(n):
        x = rng.normal(0, 1, (n, 4)).astype(np.float32)
        y = np.tanh(x[:, :2]).astype(np.float32)
        y[rng.random(n) < 0.2] = -5.0  # the organisers' code for a missing VA label
        return Example.make(x, y, task="va")

    train, val = [track(int(rng.integers(20, 40))) for _ in range(8)], [track(30) for _ in range(4)]
    s = TrainSettings(model="gru@2", model_params={"hidden": 16, "per_frame": True, "sigmoid": False}, task="va",
                      loss="ccc", epochs=4, lr=0.01, batch_size=4, monitor={"split": "inner"})
    assert s.monitor_spec().metric == "ccc"  # the task's own metric by default
    model, history = fit(s, train, val=val, input_dim=4, output_dim=2)
    best = history["best_epoch"]
    assert history["monitored"][best] == max(history["monitored"])
    pred = np.concatenate(predict(model, [e.x for e in val], settings=s))
    truth = np.concatenate([np.where(e.valid.numpy(), e.y.numpy(), np.nan) for e in val])
    assert np.isnan(truth).any()
    expected = score_arrays("ccc", truth, pred, ["valence", "arousal"])["mean"]
    assert history["monitored"][best] == pytest.approx(expected, abs=1e-6)


def test_validation_score_leaves_out_targets_the_set_cannot_score():
    truth = np.array([[0.1, 0.5], [0.4, 0.5], [0.9, 0.5]])
    pred = np.array([[0.2, 0.1], [0.3, 0.7], [0.8, 0.2]])
    assert validation_score("pearson", truth, pred) == pytest.approx(np.corrcoef(truth[:, 0], pred[:, 0])[0, 1])
    # an undefined score on a scoreable target (constant prediction) makes the epoch unscored
    assert np.isnan(validation_score("pearson", truth, np.full((3, 2), 0.5)))


@pytest.mark.parametrize("monitor, message", [
    ({"metric": "auc", "split": "inner"}, "monitor.metric 'auc'; known: pearson, ccc, f1, loss"),
    ({"metric": "f1", "split": "inner"}, "monitor.metric f1 scores binary targets"),
    ({"metric": "pearson"}, "monitor.split None: name the validation set, one of inner, official, heldout"),
    ({"split": "test"}, "monitor.split 'test'"),
    ({"split": "inner", "fraction": 1.5}, r"monitor.fraction must lie in \(0, 1\)"),
    ({"split": "inner", "fraction": "a tenth"}, "monitor.fraction must lie"),
    ({"split": "official", "fraction": 0.2}, "monitor.fraction applies to split inner only"),
    ({"split": "inner", "patience": 3}, r"monitor: unknown key\(s\) \['patience'\]"),
    (["pearson"], "monitor \\['pearson'\\]: expected a mapping"),
])
def test_a_bad_monitor_fails_at_settings_naming_the_key(monitor, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(model="gru", task="emi", monitor=monitor)
    runs = {"runs": {"r": {"backbone": "b", "model": "gru", "task": "emi", "monitor": monitor}}}
    with pytest.raises(ValueError, match="train.runs.r: monitor"):
        check_runs(runs)


def test_val_fraction_and_a_monitor():
    s = TrainSettings(model="gru", val_fraction=0.2, monitor={"split": "inner"})
    assert s.monitor_spec() == Monitor("pearson", "inner", 0.2)  # an inner monitor takes it as its fraction
    with pytest.raises(ValueError, match="monitor.fraction 0.3 and val_fraction 0.2 disagree"):
        TrainSettings(model="gru", val_fraction=0.2, monitor={"split": "inner", "fraction": 0.3})
    with pytest.raises(ValueError, match="set val_fraction: 0"):
        TrainSettings(model="gru", val_fraction=0.2, monitor={"split": "official"})
    assert parse_monitor({}, task="emi") is None
    assert parse_monitor({"split": "official"}, task="au").metric == "f1"


# -- a fold ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fold_data(tmp_path_factory):
    """48 labelled clips (every 4th of the official validation split, folds 0/1 alternating) in one shard."""
    d = tmp_path_factory.mktemp("monitor")
    rng = np.random.default_rng(7)
    rows = []
    with ShardWriter(d / "shard-0.h5", file_attrs={"stage": "features", "backbone": "fake"}) as writer:
        for clip_id in range(1, 49):
            x, y = clip(rng, 0.1)
            writer.add_clip(clip_id, {"features": x, "timestamps": np.arange(len(x)) / 10.0})
            rows.append({"id": clip_id, "split": "val" if clip_id % 4 == 0 else "train", "subject": "",
                         "media": f"/raw/{clip_id:05d}.mp4", "fold": clip_id % 2,
                         **dict(zip(TARGETS, y, strict=True))})
    return pd.DataFrame(rows), [str(d / "shard-0.h5")]


def small(**kw) -> TrainSettings:
    base = dict(model="gru", model_params={"hidden": 16, "dropout": 0.0}, epochs=6, lr=0.01, batch_size=8,
                max_steps=12, seed=3)
    return TrainSettings(**{**base, **kw})


def test_official_monitor_of_the_official_fold_is_in_sample_and_the_saved_model_is_the_best(fold_data, tmp_path):
    manifest, shards = fold_data
    s = small(fold_scheme="official", monitor={"metric": "pearson", "split": "official"})
    metrics = train_fold(manifest, shards, 0, tmp_path, targets=TARGETS, k_folds=2, settings=s)
    val = manifest[manifest["split"] == "val"]
    assert metrics["monitor"] == {"metric": "pearson", "split": "official", "selection_in_sample": True}
    assert metrics["val_clips"] == metrics["oof_clips"] == len(val)
    assert metrics["train_clips"] == len(manifest) - len(val)
    best = metrics["best_epoch"]
    assert metrics["best_score"] == metrics["monitored"][best] == max(metrics["monitored"])
    # the saved model.pt is the kept epoch's: predicted from the files, the validation clips score best_score
    pred = predict_fold(tmp_path / "model.pt", tmp_path / "config.json", val, shards, tmp_path / "val.csv")
    assert validation_score("pearson", val[TARGETS].to_numpy(), pred[TARGETS].to_numpy()) == pytest.approx(
        metrics["best_score"], abs=1e-5)
    assert json.loads((tmp_path / "config.json").read_text())["monitor"] == s.monitor
    # the learning curves show the monitored metric and where the kept epoch lies
    history = read_history(tmp_path / "metrics.json")
    table = write_learning_curves([tmp_path / "metrics.json"], svg=tmp_path / "c.svg", tsv=tmp_path / "c.tsv",
                                  title="t")
    assert set(table["monitor"]) == {"pearson, official validation split"}
    assert table["kept"].tolist() == [e == best for e in range(metrics["epochs_run"])]
    fig = learning_curves_figure([history], title="t")
    metric_ax = fig.axes[1]
    assert metric_ax.get_ylabel().startswith("pearson, official validation split")
    ring = [line for line in metric_ax.get_lines() if line.get_markersize() == 10]
    assert [list(ring[0].get_xdata()), list(ring[0].get_ydata())] == [[best + 1], [metrics["best_score"]]]


def test_official_monitor_outside_the_out_of_fold_clips_is_not_trained_on(fold_data, tmp_path):
    manifest, shards = fold_data
    manifest = manifest.assign(fold=np.where(manifest["split"] == "val", -2, manifest["fold"]))  # train-only
    s = small(monitor={"metric": "pearson", "split": "official"})
    metrics = train_fold(manifest, shards, 0, tmp_path, targets=TARGETS, k_folds=2, settings=s)
    train = manifest[(manifest["split"] == "train") & (manifest["fold"] != 0)]
    assert metrics["monitor"]["selection_in_sample"] is False
    assert metrics["train_clips"] == len(train) and metrics["val_clips"] == int((manifest["split"] == "val").sum())


def test_inner_monitor_holds_out_its_fraction(fold_data, tmp_path):
    manifest, shards = fold_data
    s = small(monitor={"metric": "loss", "split": "inner", "fraction": 0.25})
    metrics = train_fold(manifest, shards, 0, tmp_path, targets=TARGETS, k_folds=2, settings=s)
    assert metrics["monitor"] == {"metric": "loss", "split": "inner", "fraction": 0.25, "selection_in_sample": False}
    assert metrics["val_clips"] == 6 and metrics["train_clips"] == 18
    assert metrics["best_score"] == min(metrics["monitored"])


def test_heldout_monitor_chooses_on_the_out_of_fold_clips(fold_data, tmp_path):
    manifest, shards = fold_data
    s = small(monitor={"metric": "pearson", "split": "heldout"})
    metrics = train_fold(manifest, shards, 1, tmp_path, targets=TARGETS, k_folds=2, settings=s)
    assert metrics["monitor"] == {"metric": "pearson", "split": "heldout", "selection_in_sample": True}
    # nothing more held out: every clip outside fold 1 is trained on, every fold-1 clip monitored
    assert metrics["train_clips"] == int((manifest["fold"] != 1).sum()) == 24
    assert metrics["val_clips"] == metrics["oof_clips"] == 24
    # the kept epoch's monitored score is the OOF score itself (the same clips, the same scorer)
    assert metrics["best_score"] == max(metrics["monitored"])
    assert metrics["oof_score"]["mean"] == pytest.approx(metrics["best_score"], abs=1e-5)
    with pytest.raises(ValueError, match="monitor.split heldout, but the fold has no out-of-fold clip"):
        train_fold(manifest.assign(fold=np.where(manifest["fold"] == 1, -2, 0)), shards, 1, tmp_path / "none",
                   targets=TARGETS, k_folds=2, settings=s)
    for split in ("heldout", "official"):
        with pytest.raises(ValueError, match=f"split {split}: fold_scheme mix trains on every labelled clip"):
            small(fold_scheme="mix", monitor={"split": split})
    with pytest.raises(ValueError, match="monitor.split heldout names its validation clips; val_fraction 0.2"):
        small(val_fraction=0.2, monitor={"split": "heldout"})


def test_inner_monitor_holds_out_whole_groups(fold_data, tmp_path):
    manifest, shards = fold_data
    # pairs of clips share a subject, as an Aff-Wild2 video's _left and _right tracks share their video
    grouped = manifest.assign(subject=[f"video{(i - 1) // 2}" for i in manifest["id"]],
                              fold=[((i - 1) // 2) % 2 for i in manifest["id"]])
    s = small(monitor={"metric": "loss", "split": "inner", "fraction": 0.25}, epochs=1)
    metrics = train_fold(grouped, shards, 0, tmp_path, targets=TARGETS, k_folds=2, settings=s)
    assert metrics["val_clips"] == 6 and metrics["train_clips"] == 18  # 3 whole videos of the 12 in training
    # one subject across the whole training part: holding out a group leaves nothing to train on
    one = manifest.assign(subject="everyone")
    with pytest.raises(ValueError, match="fold 0: val_fraction 0.2 holds out 24 clips and leaves 0 to train on"):
        train_fold(one, shards, 0, tmp_path / "one", targets=TARGETS, k_folds=2, settings=small(val_fraction=0.2))
    # which clips, over many seeds: never one video on both sides
    fit_ids = [int(i) for i in grouped.loc[grouped["fold"] != 0, "id"]]
    groups = dict(zip(grouped["id"], group_keys(grouped)))
    for seed in range(20):
        train, val = _holdout(fit_ids, 0.25, seed, groups)
        videos = {groups[i] for i in val}
        assert videos.isdisjoint(groups[i] for i in train), seed  # no video on both sides
        assert len(val) == 6 and sorted(train + val) == sorted(fit_ids)
    # without groups the held-out clips are a plain seeded draw, as before groups were known
    single = {i: ("clip", str(i)) for i in fit_ids}
    assert _holdout(fit_ids, 0.25, 3, single)[1] == sorted(
        np.random.default_rng(3).permutation(fit_ids)[:6].tolist(), key=fit_ids.index)


def test_official_monitor_without_validation_clips_fails(fold_data, tmp_path):
    manifest, shards = fold_data
    with pytest.raises(ValueError, match="fold 0: monitor.split official, but no labelled clip of the validation"):
        train_fold(manifest.assign(split="train"), shards, 0, tmp_path, targets=TARGETS, k_folds=2,
                   settings=small(monitor={"split": "official"}))
    # one training-split clip outside fold 0 (id 1) and the validation clips moved there: 1 left to train on
    few = manifest[(manifest["split"] == "val") | manifest["id"].isin([1, 2])]
    few = few.assign(fold=np.where(few["split"] == "val", 1, few["fold"]))
    with pytest.raises(ValueError, match="holds out 12 clips and leaves 1 to train on"):
        train_fold(few, shards, 0, tmp_path, targets=TARGETS, k_folds=2, settings=small(monitor={"split": "official"}))


def test_without_a_monitor_a_fold_writes_what_it_wrote_before(fold_data, tmp_path):
    manifest, shards = fold_data
    outputs = {}
    for name, s in (("without", small(val_fraction=0.2, early_stopping=2)),
                    ("empty", small(val_fraction=0.2, early_stopping=2, monitor={}))):
        train_fold(manifest, shards, 0, tmp_path / name, targets=TARGETS, k_folds=2, settings=s)
        outputs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
    assert outputs["without"] == outputs["empty"]
    assert sorted(outputs["empty"]) == ["config.json", "metrics.json", "model.pt", "oof.csv"]
    assert "monitor" not in json.loads(outputs["empty"]["config.json"])
    metrics = json.loads(outputs["empty"]["metrics.json"])
    assert list(metrics) == ["fold", "task", "fold_scheme", "train_clips", "train_examples", "val_clips", "oof_clips",
                             "oof_rows", "oof_rows_predicted", "oof_clips_predicted", "oof_score", "train_loss",
                             "monitored", "lr", "best_epoch", "epochs_run", "padding_fraction", "device"]


def test_the_monitored_learning_curves_pass_the_report_figure_checks():
    histories = [{**h, "monitor": {"metric": "ccc", "split": "inner", "fraction": 0.1},
                  "monitored": [0.2, 0.35, 0.5, 0.45, 0.4]} for h in report_plots.histories()]
    fig = learning_curves_figure(histories, title="Learning curves of run va")
    FigureCanvasAgg(fig).draw()
    report_plots.test_every_figure_has_labelled_axes_and_nothing_outside_it("learning curves monitored", fig)
    assert len(fig.axes) == 2 and "ccc, inner validation split" in fig.axes[1].get_ylabel()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "fold 0 monitored (ccc, inner validation split)" in labels and "kept epoch" in labels
    assert not any("no validation split" in label for label in labels)
    assert list(history_table(histories)["monitor"].unique()) == ["ccc, inner validation split"]
    assert "monitor" not in history_table(report_plots.histories()).columns  # without one: the columns as before
