"""The `coe` command line, one module per command group (ask, index, serve, experts, leaderboard, eval).

`main.build_parser()` assembles the groups; each group module exposes `add_commands(commands)` and imports what
its handlers need inside them, so `coe --help` stays fast.
"""
