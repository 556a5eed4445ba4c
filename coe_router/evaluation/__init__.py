"""Offline evaluation, apart from the runtime: recorded outcomes, leaderboards, replayed routers, splits, tuning,
quality/cost curves, bootstrap intervals, plots and the outcomes runner that records experts' answers. Nothing in
the live graph imports this package."""

DEFAULT_CLASSIFIER_K = 5
"""Retrieved examples the knn classifier votes with, in every offline command (`coe eval classifier`, `replay`,
`curve`) and as the task k of the knn-router's task prior; the live retriever's default `retriever.k` is also 5.
`--k auto` chooses it by leave-one-out on the training split instead (tuning.CLASSIFIER_K_GRID)."""
