"""The comparison grid (vaebook.lab.verdict_grid): one row per setting that ran, our value coloured by its verdict
with the paper's under it, the settings not run in one line, reasons folded."""
import pandas as pd

from vaebook.lab.verdict_grid import folded_html, grid_html, legend_html, not_run_line, split_not_run


def _table():
    return pd.DataFrame({
        "sx": [0.0, 0.0, -0.1, -0.1, -0.2, -0.2],
        "metric": ["mse", "kl", "mse", "kl", "mse", "kl"],
        "paper": [52.7, 0.0, 18.0, 9.3, 15.2, 10.9],
        "ours": [19.3, 6.6, 17.9, None, None, None],
        "verdict": ["differs", "differs", "match", None, None, None],
        "reason": ["ours 19.3 vs paper 52.7 <far>", "x", "within 10%", None, None, None]})


def test_grid_rows_are_the_settings_that_ran_and_cells_carry_verdict_and_paper():
    h = grid_html(_table(), "sx", labels={"mse": "MSE (summed)"}, key_label="log σx²", key_format=lambda v: f"{v:g}")
    assert h.count("<tr>") == 3  # the header and the two settings with values of ours; -0.2 did not run
    assert ">-0.2<" not in h and "MSE (summed)" in h
    assert '<span class="vb-badge vb-differs" title="differs: ours 19.3 vs paper 52.7 &lt;far&gt;">19.3</span>' in h
    assert '<span class="vb-badge vb-match" title="match: within 10%">17.9</span><div class="vb-paper">paper 18</div>' in h
    assert '<span class="vb-badge vb-not-run" title="not run">–</span>' in h  # kl at -0.1: a paper value, none of ours


def test_not_run_settings_are_one_line_and_the_legend_counts_verdicts():
    assert not_run_line(_table(), "sx", "log σx² =", lambda v: f"{v:g}") == (
        "Not run here (1 of the paper's rows, 2 printed values): log σx² = -0.2.")
    assert not_run_line(_table()[_table()["sx"] > -0.2], "sx") == ""
    one = _table().assign(paper=[52.7, 0.0, 18.0, 9.3, 15.2, None])
    assert not_run_line(one, "sx") == "Not run here (1 of the paper's rows, 1 printed value): -0.2."
    leg = legend_html(_table())
    assert 'vb-differs">differs</span>&nbsp;2' in leg and 'vb-match">match</span>&nbsp;1' in leg


def test_folded_table_is_closed_details():
    h = folded_html(pd.DataFrame({"a": [1], "verdict": ["match"]}), "Why each verdict")
    assert h.startswith('<details class="vb-more vb-folded-table"><summary>Why each verdict</summary>')
    assert "<details open" not in h and "vb-badge vb-match" in h


def test_split_not_run_keeps_the_rows_that_ran_and_names_the_others_in_one_line():
    sig = pd.DataFrame({"dataset": ["mnist", "celeba64"], "metric": ["sigma2", "sigma2"], "paper": [0.0037, 0.0040],
                        "ours": [0.0125, None], "verdict": ["trend holds", None],
                        "reason": ["far below 1", "not run: dataset 'celeba64' not selected"]})
    ran, line = split_not_run(sig, "dataset", key_format=lambda d: {"mnist": "MNIST", "celeba64": "CelebA 64×64"}[d])
    assert list(ran["dataset"]) == ["mnist"]
    assert line == "Not run here (1 of the paper's rows, 1 printed value): CelebA 64×64."
    ran, line = split_not_run(sig.iloc[:1], "dataset")
    assert len(ran) == 1 and line == ""
