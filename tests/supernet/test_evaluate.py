"""Scoring subnets: recalibrated batch norms on a fixed sample of training images, held-out top-1 and
log-loss equal to the static subnet's, the supernet left as it was, caching, and bad data refused."""
from __future__ import annotations

import math

import pytest
import torch

from nas.data import prepared
from nas.errors import DataError
from nas.space import decisions, sample
from nas.supernet import SubnetEvaluator
from nas.supernet.evaluate import calibration_indices
from nas.train import evaluate_loss, recalibrate_bn


CALIB = 64


@pytest.fixture(scope="module")
def evaluator(supernet):
    return SubnetEvaluator(supernet, "digits", calib_images=CALIB, device="cpu")


def _calibration(space, resolution, seed=0):
    ds = prepared("digits", resolution, space.in_channels)
    return ds.x_train[calibration_indices(len(ds.y_train), CALIB, seed)], ds


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_score_is_the_static_subnet_recalibrated_on_the_calibration_images(supernet, evaluator, seed) -> None:
    arch = sample(supernet.space, seed)
    reference = supernet.subnet(arch)
    x_calib, ds = _calibration(supernet.space, supernet.plan(arch).resolution)
    recalibrate_bn(reference, x_calib)
    top1, loss = evaluate_loss(reference, ds.x_test, ds.y_test)
    got = evaluator.score(arch)
    assert got.top1 == top1
    assert got.log_loss == pytest.approx(loss, rel=1e-6)
    assert 0 < got.log_loss < 10 and got.seconds > 0


def test_without_recalibration_the_shared_statistics_score(supernet, evaluator) -> None:
    arch = sample(supernet.space, 4)
    _, ds = _calibration(supernet.space, supernet.plan(arch).resolution)
    with torch.no_grad():
        logits = supernet.eval()(ds.x_test, arch)
    got = evaluator.score(arch, recalibrate=False)
    assert got.top1 == int((logits.argmax(1) == ds.y_test).sum()) / len(ds.y_test)
    assert got.log_loss == pytest.approx(torch.nn.functional.cross_entropy(logits, ds.y_test).item(), rel=1e-5)
    # A briefly trained supernet's shared statistics are a mix of every subnet's: recalibration changes the score.
    assert evaluator.score(arch).log_loss != got.log_loss


def test_the_supernet_and_the_callers_random_state_are_left_alone(supernet, evaluator) -> None:
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    evaluator.images(12), evaluator.images(16)
    rng = torch.get_rng_state()
    for seed in range(10, 14):
        evaluator.score(sample(supernet.space, seed))
        evaluator.recalibrated(sample(supernet.space, seed))
    assert torch.equal(rng, torch.get_rng_state())
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_every_resolution_calibrates_on_the_same_images(supernet) -> None:
    picks = calibration_indices(1438, CALIB, 0)
    assert torch.equal(picks, calibration_indices(1438, CALIB, 0)) and len(set(picks.tolist())) == CALIB
    assert not torch.equal(picks, calibration_indices(1438, CALIB, 1))
    labels = [prepared("digits", r, 3).y_train[picks] for r in supernet.space.resolution]
    assert torch.equal(labels[0], labels[1])


def test_scores_are_cached_per_canonical_architecture_and_flag(supernet, evaluator) -> None:
    space = supernet.space
    arch = dict(sample(space, 5))
    arch["s1.depth"] = 1
    first = evaluator.score(arch)
    inactive = dict(arch)  # the second block of s1 is beyond its depth: changing it changes no network
    names = [d.name for d in decisions(space) if d.name.startswith("s1.b1.")]
    for name in names:
        choices = next(d.choices for d in decisions(space) if d.name == name)
        inactive[name] = choices[-1] if arch[name] == choices[0] else choices[0]
    assert evaluator.score(inactive) is first
    assert evaluator.score(arch, recalibrate=False) is not first


def test_recalibrated_is_a_static_network_with_the_recalibrated_statistics(supernet, evaluator) -> None:
    arch = sample(supernet.space, 6)
    net = evaluator.recalibrated(arch)
    assert not net.training
    state = net.state_dict()
    stats = evaluator.statistics(arch)
    assert stats and all(torch.equal(state[k], v) for k, v in stats.items())
    shared = supernet.weights(arch)
    assert any(not torch.equal(shared[k], v) for k, v in stats.items() if k.endswith("running_mean"))
    x = evaluator.images(supernet.plan(arch).resolution)[1][:32]
    with torch.no_grad():
        assert (net(x) - evaluator.module(arch)(x)).abs().max().item() <= 1e-6


def test_data_as_prepared_sets_by_resolution(supernet, evaluator) -> None:
    data = {r: prepared("digits", r, 3) for r in supernet.space.resolution}
    by_sets = SubnetEvaluator(supernet, data, calib_images=CALIB, device="cpu")
    arch = sample(supernet.space, 7)
    assert (by_sets.score(arch).top1, by_sets.score(arch).log_loss) == \
        (evaluator.score(arch).top1, evaluator.score(arch).log_loss)


def test_bad_data_is_refused_in_one_line(supernet, tmp_path) -> None:
    arch = dict(sample(supernet.space, 8))
    arch["res"] = 16
    with pytest.raises(DataError) as info:
        SubnetEvaluator(supernet, {12: prepared("digits", 12, 3)}, device="cpu").score(arch)
    assert str(info.value) == "data: no data set at resolution 16 (given: 12)"
    for name in ("a", "b"):
        (tmp_path / "two" / name).mkdir(parents=True)
        for i in range(2):
            from PIL import Image

            Image.new("RGB", (4, 4), (i * 90, 0, 0)).save(tmp_path / "two" / name / f"{i}.png")
    with pytest.raises(DataError) as info:
        SubnetEvaluator(supernet, tmp_path / "two", device="cpu").score(arch)
    assert str(info.value) == (f"{(tmp_path / 'two').resolve()}: 2 classes, but the supernet of "
                               f"{supernet.space.file} has 10 outputs; score it on the data it was trained on")
    with pytest.raises(DataError) as info:
        SubnetEvaluator(supernet, "digits", calib_images=1)
    assert str(info.value) == "calibration images must be an integer of at least 2, got 1"


def test_log_loss_is_the_mean_cross_entropy() -> None:
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        model.bias.zero_()
    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    top1, loss = evaluate_loss(model, x, y)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 3
    assert top1 == pytest.approx(2 / 3) and loss == pytest.approx(expected, rel=1e-6)
