"""The library's entry points refuse bad input before any work (issue #30): vaebook.checks and its callers."""
from __future__ import annotations

import math

import pytest
import torch

from vaebook.checks import (InputError, check_build_model, check_fit, check_variance_args,
                            check_variance_inputs)
from vaebook.data import DATASETS
from vaebook.lab.zoo import Job, Zoo
from vaebook.models import MODEL_REGISTRY, build_model
from vaebook.nets import ARCHITECTURES
from vaebook.train import TrainConfig, fit
from vaebook.variance import MODES, build_variance

#: ``build_model``, ``fit`` and the Σx classes live in packages hashed into trained-model cache keys; their
#: call-site edits (see vaebook/checks.py and the issue-#30 report) are applied at a safe moment. Until then
#: these tests of the real entry points fail as expected; strict, so they turn red once the edits land.


def _mnist(n=16):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


class _Model:
    x_shape = (1, 28, 28)


# -- build_model ---------------------------------------------------------------------------------------------
def test_unknown_architecture_lists_the_registered_ones():
    with pytest.raises(InputError, match=r"build_model: argument 'arch' = 'cifar' is not registered; expected one of "
                                         r"\['celeba64', 'celebahq128', 'd1', 'mnist'\].*register_arch"):
        check_build_model("mle-iso-i", "cifar", MODEL_REGISTRY, ARCHITECTURES, DATASETS)


def test_a_dataset_name_given_as_architecture_gets_a_hint():
    with pytest.raises(InputError, match="'noisy-mnist' is a dataset; its architecture is 'mnist'"):
        check_build_model("mle-iso-i", "noisy-mnist", MODEL_REGISTRY, ARCHITECTURES, DATASETS)


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(InputError, match=r"argument 'name' = 'mle-iso' .*'mle-iso-i'.*register_model"):
        check_build_model("mle-iso", "mnist", MODEL_REGISTRY, ARCHITECTURES, DATASETS)
    check_build_model("mle-iso-i", "mnist", MODEL_REGISTRY, ARCHITECTURES, DATASETS)  # a good call passes


def test_build_model_itself_refuses_an_unknown_architecture():
    with pytest.raises(InputError, match="'cifar'.*expected one of"):
        build_model("mle-iso-i", "cifar")


# -- fit ------------------------------------------------------------------------------------------------------
def test_images_of_another_shape_name_the_expected_shape():
    with pytest.raises(InputError, match=r"argument 'train_images' has shape 8×3×32×32; expected N×1×28×28"):
        check_fit(_Model(), torch.rand(8, 3, 32, 32), TrainConfig())


@pytest.mark.parametrize("lr", [math.inf, math.nan, -1e-3, 0.0, "1e-3"])
def test_non_finite_or_non_positive_lr_is_refused(lr):
    with pytest.raises(InputError, match=r"argument 'config\.lr' = .*expected a finite number > 0"):
        check_fit(_Model(), _mnist(), TrainConfig(lr=lr))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_in_the_images_is_refused(bad):
    x = _mnist()
    x[3, 0, 5, 5] = bad
    with pytest.raises(InputError, match=r"'val_images' holds 1 NaN/infinite value\(s\) \(first in image 3\)"):
        check_fit(_Model(), _mnist(), TrainConfig(), val_images=x)


def test_images_that_are_not_a_tensor_or_of_a_wrong_dtype():
    with pytest.raises(InputError, match="is a list; expected a torch.Tensor of shape N×1×28×28"):
        check_fit(_Model(), [[0.0]], TrainConfig())
    with pytest.raises(InputError, match="dtype torch.int64; expected uint8"):
        check_fit(_Model(), torch.zeros(4, 1, 28, 28, dtype=torch.long), TrainConfig())
    check_fit(_Model(), (_mnist() * 255).to(torch.uint8), TrainConfig())  # uint8 images pass


def test_fit_itself_refuses_an_infinite_lr_before_the_first_step():
    model = build_model("mle-iso-i", "mnist")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(InputError, match="config.lr"):
        fit(model, _mnist(), TrainConfig(lr=math.inf, batch_size=8, max_steps=1, device="cpu"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# -- through the model zoo (applied now: vaebook.lab is not part of the trained-model key) ---------------------
@pytest.mark.parametrize("train, data, match", [
    (dict(lr=math.inf), _mnist, "'config.lr' = inf"),
    (dict(lr=1e-3), lambda: torch.rand(16, 3, 32, 32), "shape 16×3×32×32; expected N×1×28×28"),
    (dict(lr=1e-3), lambda: _mnist().index_fill_(0, torch.tensor([2]), math.nan), "NaN/infinite.*first in image 2"),
])
def test_zoo_refuses_bad_jobs_before_training_any(tmp_path, train, data, match):
    good = Job.make("mle-iso-i", "mnist", dict(epochs=1, batch_size=8, lr=1e-3, max_steps=1))
    bad = Job.make("mle-iso-d", "mnist", dict(epochs=1, batch_size=8, max_steps=1, **train))
    x = data()
    zoo = Zoo(tmp_path, lambda j: x if j is bad else _mnist(), "cpu", log=None)
    with pytest.raises(InputError, match=f"mle-iso-d on mnist: .*{match}"):
        zoo.train([good, bad])
    assert not any(tmp_path.iterdir())  # the good job did not train either


# -- the Σx classes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    (dict(value=math.inf), "'value' = inf; expected a finite number > 0"),
    (dict(value=0.0), "'value' = 0.0"),
    (dict(eps=-1e-6), "'eps' = -1e-06; expected a finite number >= 0"),
    (dict(eps=math.nan), "'eps' = nan"),
    (dict(ema=2.0), r"'ema' = 2.0; expected a rate in \(0, 1\]"),
    (dict(x_shape=(28, 28)), r"'x_shape' = \(28, 28\); expected three positive integers"),
    (dict(mode="learned"), r"'mode' = 'learned' is not registered; expected one of \['fixed', 'mle', 'trainable'\]"),
])
def test_variance_arguments_are_checked(kw, match):
    args = dict(x_shape=(1, 28, 28), mode="mle", value=1.0, eps=1e-6, ema=0.02, **{})
    args.update(kw)
    with pytest.raises(InputError, match=match):
        check_variance_args("IsoI", args["x_shape"], args["mode"], args["value"], args["eps"], args["ema"], MODES)


def test_variance_inputs_name_the_expected_shape():
    x = _mnist(4)
    check_variance_inputs("IsoI", (1, 28, 28), x, x.unsqueeze(0))
    with pytest.raises(InputError, match=r"'x' has shape 4×3×32×32; expected B×1×28×28"):
        check_variance_inputs("IsoI", (1, 28, 28), torch.rand(4, 3, 32, 32), x)
    with pytest.raises(InputError, match=r"'mu' has shape 2×1×28×28; expected 4×1×28×28 or S×4×1×28×28"):
        check_variance_inputs("IsoI", (1, 28, 28), x, x[:2])


def test_variance_class_itself_refuses_an_infinite_value():
    with pytest.raises(InputError, match="'value' = inf"):
        build_variance("iso-i", (1, 28, 28), mode="fixed", value=math.inf)
