"""Trainer resume safety: a changed setup is refused, extended runs reach the asked step count exactly,
and stale temp files of a killed save are removed."""
import pytest
import torch

import vaebook  # noqa: F401
from vaebook.models import build_model
from vaebook.train import TrainConfig, Trainer, fit

torch.set_num_threads(1)

BASE = dict(batch_size=32, lr=1e-3, seed=3, device="cpu", log_every=3)  # 192 images: 6 steps per epoch


def _data(n=192, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _model(init=None):
    torch.manual_seed(0)
    m = build_model("mle-iso-i", "mnist")
    if init is not None:
        m.load_state_dict(init)
    return m


def _checkpointed(tmp_path, data, **cfg):
    """A short run (2 steps) that leaves tmp_path/checkpoint.pt."""
    Trainer(_model(), data, TrainConfig(**{**BASE, "epochs": 1, "max_steps": 2, **cfg},
                                        checkpoint_dir=str(tmp_path))).fit()
    assert (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("field,new", [("lr", 1e-2), ("batch_size", 16), ("weight_decay", 1e-4),
                                       ("lr_schedule", "cosine"), ("seed", 4)])
def test_resume_with_a_changed_setting_is_refused(tmp_path, field, new):
    data = _data()
    _checkpointed(tmp_path, data)
    cfg = TrainConfig(**{**BASE, "epochs": 2, field: new}, checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(ValueError) as err:
        Trainer(_model(), data, cfg)
    msg = str(err.value)
    old = TrainConfig(**BASE).__dict__[field]
    assert f"{field}: {old!r} -> {new!r}" in msg
    assert str(tmp_path / "checkpoint.pt") in msg and "delete" in msg.lower() and "restore" in msg


def test_resume_with_lr_changed_names_old_and_new_lr(tmp_path):
    data = _data()
    _checkpointed(tmp_path, data, lr=1e-3)
    with pytest.raises(ValueError, match=r"lr: 0\.001 -> 0\.01"):
        Trainer(_model(), data, TrainConfig(**{**BASE, "epochs": 1, "lr": 1e-2}, checkpoint_dir=str(tmp_path),
                                            resume=True))


def test_resume_on_different_training_data_is_refused(tmp_path):
    data = _data()
    _checkpointed(tmp_path, data)
    other = data.clone()
    other[0, 0, 0, 0] += 0.5  # one pixel differs
    cfg = TrainConfig(**BASE, epochs=1, checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(ValueError, match="training data") as err:
        Trainer(_model(), other, cfg)
    assert str(tmp_path / "checkpoint.pt") in str(err.value)
    Trainer(_model(), data.clone(), cfg)  # the same content (a fresh copy) resumes


def test_cosine_schedule_refuses_a_changed_epoch_count(tmp_path):
    data = _data()
    _checkpointed(tmp_path, data, lr_schedule="cosine")  # T_max = epochs = 1
    with pytest.raises(ValueError, match=r"epochs: 1 -> 3"):
        Trainer(_model(), data, TrainConfig(**{**BASE, "epochs": 3, "lr_schedule": "cosine"},
                                            checkpoint_dir=str(tmp_path), resume=True))


@pytest.mark.parametrize("first,second,steps", [
    (dict(epochs=2, max_steps=4), dict(epochs=2, max_steps=8), 8),  # a larger cap
    (dict(epochs=1, max_steps=4), dict(epochs=2), 12),  # more epochs, cap lifted
    (dict(epochs=2, max_steps=6), dict(epochs=2, max_steps=9), 9),  # capped at an epoch end
])
def test_extending_a_capped_run_trains_the_asked_steps_bit_identically(tmp_path, first, second, steps):
    data = _data()
    init = {k: v.clone() for k, v in _model().state_dict().items()}
    ref = _model(init)
    ref_tr = Trainer(ref, data, TrainConfig(**BASE, **second))
    h_ref = ref_tr.fit()
    assert ref_tr.step == steps

    Trainer(_model(init), data, TrainConfig(**BASE, **first, checkpoint_dir=str(tmp_path))).fit()
    tr = Trainer(build_model("mle-iso-i", "mnist"), data,
                 TrainConfig(**BASE, **second, checkpoint_dir=str(tmp_path), resume=True))
    h = tr.fit()
    assert tr.step == steps and h.epochs[-1]["step"] == steps
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == steps
    for (k, a), b in zip(ref.state_dict().items(), tr.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [(e["epoch"], e["step"], e["loss"], e["curve"]) for e in h.epochs] == \
        [(e["epoch"], e["step"], e["loss"], e["curve"]) for e in h_ref.epochs]
    assert [pt["step"] for pt in h.curve] == list(range(3, steps + 1, 3))  # a cut mid-window resumes it


def test_rerunning_a_finished_capped_run_keeps_its_history(tmp_path):
    data = _data()
    cfg = TrainConfig(**BASE, epochs=2, max_steps=4, checkpoint_dir=str(tmp_path), resume=True)
    h1 = Trainer(_model(), data, cfg).fit()
    tr = Trainer(build_model("mle-iso-i", "mnist"), data, cfg)
    h2 = tr.fit()
    assert tr.step == 4
    assert [(e["epoch"], e["step"], e["loss"]) for e in h2.epochs] == \
        [(e["epoch"], e["step"], e["loss"]) for e in h1.epochs] == [(1, 4, h1.epochs[0]["loss"])]


def test_stale_temp_files_of_a_killed_save_are_removed(tmp_path):
    data = _data()
    _checkpointed(tmp_path, data)
    real = (tmp_path / "checkpoint.pt").read_bytes()
    stale = [tmp_path / ".checkpoint.pt.k1ll3d_x.tmp", tmp_path / ".model.pt.abcd1234.tmp",
             tmp_path / ".history.json.zz9.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1024)
    others = [tmp_path / ".results.json.abc.tmp", tmp_path / "notes.tmp", tmp_path / "checkpoint.pt.tmp"]
    for p in others:
        p.write_text("not ours")
    Trainer(_model(), data, TrainConfig(**BASE, epochs=1, checkpoint_dir=str(tmp_path)))
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in others)  # only the temp files of the files the trainer writes
    assert (tmp_path / "checkpoint.pt").read_bytes() == real
