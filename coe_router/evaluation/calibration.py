"""Threshold calibration (RouteLLM's): the cost weight that sends a chosen share of the queries to the strong model.

An operator thinks in traffic ("at most 30% of calls on the expensive expert"), the router in a cost weight
lambda (utility = expected score - lambda x price / dearest price). The share of queries whose best utility is
the strong model's only falls as lambda grows, so the smallest lambda reaching the target share is found by
bisection. It is calibrated on the training questions, each estimated with itself hidden from its own
neighbours (as a new query sees the memory), never on the test split; the test share is reported to show how
well the calibration carries over.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from coe_router.routing.query_router import KnnRouter


class Calibration(BaseModel):
    strong_model: str
    target_share: float = Field(description="share of queries asked to go to the strong model (0-1)")
    cost_weight: float = Field(description="lambda: the smallest cost weight whose train share is <= the target")
    train_share: float = Field(description="share of the training queries routed to the strong model at lambda")
    share_at_zero: float = Field(description="share at lambda 0: more cannot be asked of a cost weight")


def strong_share(expected: np.ndarray, router: KnnRouter, strong: int, cost_weight: float) -> float:
    return float((router.choose(expected, cost_weight) == strong).mean())


def calibrate_cost_weight(router: KnnRouter, expected: np.ndarray, strong: int, target: float, *,
                          high: float = 1.0, steps: int = 40) -> Calibration:
    """The smallest cost weight in [0, `high`...] (doubled until it is enough) whose share of `expected`'s rows
    routed to `strong` is at most `target`."""
    if not 0 <= target <= 1:
        raise ValueError(f"the strong model's share is between 0 and 1, got {target}")
    at_zero = strong_share(expected, router, strong, 0.0)
    if at_zero <= target:
        return Calibration(strong_model=router.models[strong], target_share=target, cost_weight=0.0,
                           train_share=round(at_zero, 4), share_at_zero=round(at_zero, 4))
    while strong_share(expected, router, strong, high) > target:
        high *= 2
        if high > 1e6:
            raise ValueError(f"no cost weight sends at most {target:.0%} of the queries to {router.models[strong]}")
    low = 0.0
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if strong_share(expected, router, strong, middle) > target else (low, middle)
    weight = math.ceil(high * 1e6) / 1e6  # rounded up: a weight rounded down can fall back across the boundary
    return Calibration(strong_model=router.models[strong], target_share=target, cost_weight=weight,
                       train_share=round(strong_share(expected, router, strong, weight), 4),
                       share_at_zero=round(at_zero, 4))


def held_out_estimates(router: KnnRouter) -> np.ndarray:
    """The router's estimate for each of its own memory rows, the row hidden from its own neighbours."""
    idx, sims = router.neighbours(router.vectors, exclude=np.arange(len(router.vectors)))
    return router.expected_scores(idx, sims)
