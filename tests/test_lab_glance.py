"""The book at a glance (vaebook.lab.glance): intro lines from a claims table, singular/plural, MNIST-only claims,
the scale sentence and page scale lines from provenance."""
import pandas as pd

from vaebook.lab import glance as G
from vaebook.lab.status import on_datasets


class _Res:
    def __init__(self, params, preset="cpu", threads=2, training=None, wall=600.0):
        self.provenance = {"parameters": params, "device": {"device": "cpu", "threads": threads}, "wall_s": wall}
        if training is not None:
            self.provenance["training"] = training
        self.preset, self.is_smoke, self.metrics = preset, False, {}


class _Exp:
    name, title, datasets, full_cost = "toy", "Toy page", ("mnist",), "`full`: a day on a GPU"

    def __init__(self, claims):
        self._claims = claims

    def claims(self, res):
        return self._claims

    def scale(self, res):
        return "own scale"


def test_count_phrases_are_singular_or_plural():
    assert G.count_phrase(1, "inconclusive") == "1 is inconclusive"
    assert G.count_phrase(2, "inconclusive") == "2 are inconclusive"
    assert G.count_phrase(1, "holds") == "1 holds" and G.count_phrase(3, "holds") == "3 hold"
    assert G.count_phrase(1, "partly") == "1 holds partly"
    assert G.counts_sentence({"holds": 2, "not run": 1}) == "2 hold and 1 is not run"
    assert G.counts_sentence({}) == "no claims"


def test_glance_lines_follow_the_claims_table():
    claims = pd.DataFrame({"page": ["a", "a", "b", "c"], "status": ["holds", "not run", "inconclusive", "holds"],
                           "claim": ["x"] * 4})
    rows = G.glance_rows(claims, [("Section 4", ["a"]), ("Section 6", ["b"]), ("Empty", ["z"])])
    assert [(cap, n) for cap, n, _ in rows] == [("Section 4", 2), ("Section 6", 1)]
    assert rows[0][2]["holds"] == 1 and rows[0][2]["not run"] == 1 and rows[1][2]["inconclusive"] == 1
    flipped = claims.assign(status=["not reproduced", "not run", "inconclusive", "holds"])
    assert G.glance_rows(flipped, [("Section 4", ["a"])])[0][2]["holds"] == 0


def test_mnist_only_claims_say_so():
    assert on_datasets("Our FIDs rank the models", "partly", ["mnist"]) == "MNIST: our FIDs rank the models"
    assert on_datasets("MLE beats σx² = 1", "holds", ["mnist", "celeba64"]) == "MLE beats σx² = 1"
    assert on_datasets("On CelebA they compete", "not run", ["mnist"]) == "On CelebA they compete"
    assert on_datasets("best FID on MNIST", "holds", ["mnist"]) == "best FID on MNIST"


def test_page_scale_line_from_claims_and_provenance():
    exp = _Exp([{"claim": "c", "section": "4.2", "status": "holds", "evidence": "e",
                 "scale": "600 of 93,750 steps (0.64 %), 1 seed"}])
    line = G.page_scale_line(exp, _Res({"fid_samples": {"mnist": 300}, "n_test": 1000}))
    assert line.startswith("**Scale.** preset `cpu` on a 2-thread CPU · MNIST · 600 of 93,750 steps")
    assert "FID on 300 generated images" in line and "1,000 test images" in line
    assert G.page_scale_line(_Exp([]), _Res({})).endswith("own scale.")
    assert G.page_scale_line(exp, None) == ""


def test_measured_time_says_at_least_without_a_training_record():
    assert G.measured(_Res({}, wall=600.0))[1].startswith("at least 10.0 min")
    secs, words = G.measured(_Res({}, wall=600.0, training={"models": 2, "reused": 2, "train_wall_s": 1200.0}))
    assert secs == 1800.0 and words == "10.0 min + 20.0 min training the models it reused"
