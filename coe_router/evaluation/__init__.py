"""Offline evaluation, apart from the runtime: recorded outcomes, leaderboards, replayed routers, splits, tuning,
plots and the outcomes runner that records experts' answers. Nothing in the live graph imports this package."""
