"""The service owns one live expert pool and injects it into every graph it builds: an expert added over the admin
API is routed to by the config's graph and by the planning graph (`coe-plan`) alike."""

import asyncio

from coe_router import build_graph, load_config
from coe_router.builder import expert_pool
from coe_router.cli.serve import served_from_config
from coe_router.config import ExpertSpec
from coe_router.serve.admin import ExpertAdmin, NewExpert
from coe_router.serve.menu import Served
from tests.fakes import BagOfWordsEncoder, ScriptedChat
from tests.unit.conftest import write_config


def _models():
    return {name: ScriptedChat(reply=lambda p, n=name: f"answer from {n}", seen=[])
            for name in ("math-model", "code-model", "general-model")}


def test_a_graph_built_on_a_given_pool_routes_over_that_pool(config, store):
    pool = expert_pool(config, _models())
    graph = build_graph(config, models=_models(), store=store, pool=pool)
    assert graph.pool is pool and Served(graph=graph).pool is pool
    pool.add("prover", ExpertSpec(model="math-model"), ScriptedChat(reply=lambda p: "QED", seen=[]), tasks=["math"])
    result = graph.invoke({"query": "what is the integral of x squared"})
    assert result["decision"].expert == "prover" and result["answer"] == "QED"


def test_the_service_and_its_planning_graph_share_the_pool_the_admin_api_edits(tmp_path):
    config = load_config(write_config(tmp_path, planner={"model": "general-model"}))

    async def check():
        async with served_from_config(config, BagOfWordsEncoder(), progress=False)() as served:
            assert served.plan_graph is not None and served.plan_graph is not served.graph
            assert served.graph.pool is served.pool and served.plan_graph.pool is served.pool
            ExpertAdmin(served.pool, config, served.build_model).add(
                NewExpert(name="prover", model="math-model", tasks=["math"]))
            assert "coe/prover" in served.names()
            assert served.plan_graph.pool.task_map.ranking["math"][0] == "prover"

    asyncio.run(check())
