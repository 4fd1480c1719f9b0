"""Facet order of the appendix figures."""

import pandas as pd

from grokking.appendix_plots import _levels


def test_activation_facets_follow_the_report_order_and_others_follow_sorted():
    phases = pd.DataFrame({"activation": ["tanh", "relu", "gelu", "leaky_relu", "tanh"]})
    assert _levels(phases, "activation") == ["relu", "leaky_relu", "tanh", "gelu"]


def test_seed_facets_are_sorted_and_no_column_gives_one_facet():
    phases = pd.DataFrame({"data_seed": [43, 41, 42, 41]})
    assert _levels(phases, "data_seed") == [41, 42, 43]
    assert _levels(phases, None) == [None]
