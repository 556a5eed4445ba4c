"""Regenerate docs/RESULTS.md from the recorded data in data/: `python -m reports` from the repository root.

Not part of the installed `coe_router` package: the sections here are specific to three data sets (MMLU-Pro
outcomes of 29 models, LLMRouter, DevOps-Eval) and use only the library's generic evaluation
(`coe_router.evaluation`).

    main.py              header, data folder, command line, `generate_results`
    pools.py             tune on train, score every router on test (`evaluate_pool`)
    mmlu_pro.py          MMLU-Pro pools, summary, robustness over split seeds, options ablation
    mmlu_pro_models.csv  size / open weights / note of the 29 MMLU-Pro models
    llmrouter.py         LLMRouter with prices: routers, quality/cost curves (APGR, CPT, Pareto points)
    devops.py            DevOps-Eval task maps from the published aggregate tables
    tables.py            markdown tables and lines, the figures folder (docs/img)
"""
