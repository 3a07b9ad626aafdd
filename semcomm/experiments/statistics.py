"""Paired comparison of two classifiers on the same images: McNemar's exact test."""
from __future__ import annotations

import torch
from scipy.stats import binom


def paired_comparison(rule_correct: torch.Tensor, random_correct: torch.Tensor) -> dict:
    """Images only one of two classifiers gets right, and McNemar's exact two-sided p-value.

    Args:
        rule_correct, random_correct: B booleans each, whether each classifier got image i right.

    Returns:
        ``{"only_rule", "only_random", "p_value"}``: image counts and the p-value (1.0 when they never differ).
    """
    only_rule = int((rule_correct & ~random_correct).sum())
    only_random = int((random_correct & ~rule_correct).sum())
    n = only_rule + only_random
    p_value = 1.0 if n == 0 else float(min(1.0, 2 * binom.cdf(min(only_rule, only_random), n, 0.5)))
    return dict(only_rule=only_rule, only_random=only_random, p_value=p_value)
