"""Admin edits replayed onto another replica's pool (ExpertAdmin.replay, serve/admin_edits.py), without a database:
the logged form of each edit, replayed with the route's validation and model building, idempotent; and with a
database that cannot be reached, an admin call that is a 503 applied nowhere, and a poll that fails quietly while
requests are answered."""

import asyncio
import json
import logging

import httpx
import pytest

from coe_router import build_graph, load_config
from coe_router.builder import expert_pool
from coe_router.serve.admin import ExpertAdmin, NewExpert, Remap, expert_rows
from coe_router.serve.admin_edits import SharedEdits, describe
from coe_router.serve.app import create_app
from coe_router.serve.menu import Served
from coe_router.serve.protocol import ProtocolError
from tests.fakes import ScriptedChat
from tests.service_upstream import free_port
from tests.unit.conftest import CONFIG, write_config

ADMIN = "admin-token-unit-7f3"
SPARE = {"provider": "openai", "model": "spare", "base_url": "http://127.0.0.1:9/v1"}


def _models():
    return {name: ScriptedChat(reply=lambda p, n=name: f"answer from {n}", seen=[])
            for name in ("math-model", "code-model", "general-model")}


@pytest.fixture
def spare_config(tmp_path):
    """The unit config with one more model, `spare-model`, that no expert uses at start."""
    return load_config(write_config(tmp_path, models={**CONFIG["models"], "spare-model": SPARE}))


class Replica:
    """One replica's pool and admin, its models built by a recording `build_model`."""

    def __init__(self, config):
        self.built: list[str] = []
        self.pool = expert_pool(config, _models())
        self.admin = ExpertAdmin(self.pool, config, self.build_model)

    def build_model(self, config, name):
        assert name in config.models
        self.built.append(name)
        return ScriptedChat(reply=lambda p: f"answer from {name}", seen=[])

    def rows(self):
        return expert_rows(self.pool)


class Recorded:
    """A stand-in for SharedEdits that keeps the committed edits as the database would hand them back (JSON)."""

    def __init__(self):
        self.log: list[dict] = []

    def commit(self, edit, prepare, apply):
        prepare()
        self.log.append(json.loads(json.dumps(edit)))
        return apply()


def test_each_admin_edit_is_logged_in_a_form_another_replica_replays_to_the_same_pool(spare_config):
    writer, reader, shared = Replica(spare_config), Replica(spare_config), Recorded()
    admin = ExpertAdmin(writer.pool, spare_config, writer.build_model, shared)
    admin.add(NewExpert(name="prover", model="spare-model", tasks=["math"], rank=0, description="proofs",
                        style="plain", system_prompt="Prove it."))
    admin.remap("code", Remap(experts=["generalist", "coder"]))
    admin.remove("mathematician")
    assert [e["op"] for e in shared.log] == ["add", "remap", "remove"]
    assert "write_config" not in shared.log[0]["expert"] and "replace" not in shared.log[0]["expert"]
    for edit in shared.log:
        reader.admin.replay(edit)
    assert reader.rows() == writer.rows()
    assert reader.pool.task_map == writer.pool.task_map
    spec, _ = reader.pool.expert("prover")
    assert (spec.model, spec.style, spec.system_prompt) == ("spare-model", "plain", "Prove it.")
    assert reader.built == ["spare-model"]  # the replayed expert's model was built through build_model


def test_a_refused_edit_is_not_logged(spare_config):
    writer, shared = Replica(spare_config), Recorded()
    admin = ExpertAdmin(writer.pool, spare_config, writer.build_model, shared)
    with pytest.raises(ProtocolError) as caught:
        admin.add(NewExpert(name="coder", model="spare-model"))
    assert caught.value.status == 409
    with pytest.raises(ProtocolError):
        admin.remap("code", Remap(experts=["ghost"]))
    with pytest.raises(ProtocolError):
        admin.remove("ghost")
    assert shared.log == []


def test_replaying_an_edit_twice_changes_nothing_more(spare_config):
    replica = Replica(spare_config)
    add = {"op": "add", "expert": {"name": "prover", "model": "spare-model", "tasks": ["math"], "rank": 0}}
    remove = {"op": "remove", "name": "coder"}
    remap = {"op": "remap", "task": "math", "experts": ["generalist", "prover"]}
    for edit in (add, remove, remap):
        replica.admin.replay(edit)
        once = (replica.rows(), replica.pool.task_map)
        replica.admin.replay(edit)
        assert (replica.rows(), replica.pool.task_map) == once, describe(edit)
    assert replica.pool.names() == ["mathematician", "generalist", "prover"]
    assert replica.pool.task_map.ranking["math"] == ["generalist", "prover"]
    assert "code" not in replica.pool.task_map.ranking


def test_a_replayed_add_replaces_an_expert_the_config_already_has(spare_config):
    """A writer's `write_config` put the expert into a shared config file; a replica started on that file replays
    the logged add over it instead of refusing it."""
    replica = Replica(spare_config)
    replica.admin.replay({"op": "add", "expert": {"name": "coder", "model": "spare-model", "tasks": ["code"]}})
    spec, _ = replica.pool.expert("coder")
    assert spec.model == "spare-model" and replica.pool.task_map.ranking["code"][0] == "coder"


@pytest.mark.parametrize("edit, status", [
    ({"op": "add", "expert": {"name": "x", "model": "no-such-model"}}, 400),
    ({"op": "add", "expert": {"name": "x", "model": "spare-model", "tasks": ["astrology"]}}, 400),
    ({"op": "remap", "task": "math", "experts": ["ghost"]}, 400),
    ({"op": "remap", "task": "astrology", "experts": []}, 404),
])
def test_a_replayed_edit_is_validated_as_the_route_validates_it(spare_config, edit, status):
    replica = Replica(spare_config)
    before = (replica.rows(), replica.pool.task_map)
    with pytest.raises(ProtocolError) as caught:
        replica.admin.replay(edit)
    assert caught.value.status == status
    assert (replica.rows(), replica.pool.task_map) == before and replica.built == []


def test_a_replayed_remove_of_the_last_expert_is_refused(spare_config):
    replica = Replica(spare_config)
    replica.admin.replay({"op": "remove", "name": "coder"})
    replica.admin.replay({"op": "remove", "name": "mathematician"})
    with pytest.raises(ProtocolError) as caught:
        replica.admin.replay({"op": "remove", "name": "generalist"})
    assert caught.value.status == 409 and replica.pool.names() == ["generalist"]
    with pytest.raises(ValueError, match="unknown admin edit 'rename'"):
        replica.admin.replay({"op": "rename"})


# -- a database that cannot be reached ----------------------------------------------------------------------------

@pytest.fixture
def unreachable_edits():
    """SharedEdits on a psycopg pool whose database does not answer (nothing listens on its port)."""
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1", min_size=1,
                          max_size=1, open=False, timeout=0.3, kwargs={"autocommit": True})
    pool.open(wait=False)
    replayed: list[dict] = []
    try:
        yield SharedEdits(pool, replayed.append), replayed
    finally:
        pool.close()


def test_an_admin_edit_that_cannot_reach_the_database_is_a_503_applied_nowhere(spare_config, store, run_app,
                                                                                 monkeypatch, unreachable_edits):
    monkeypatch.setenv("COE_TEST_ADMIN", ADMIN)
    edits, _ = unreachable_edits
    replica = Replica(spare_config)
    graph = build_graph(spare_config, models=_models(), store=store, pool=replica.pool)
    url = run_app(create_app(Served(graph=graph, config=spare_config, build_model=replica.build_model,
                                    admin_edits=edits), token_env=None, admin_token_env="COE_TEST_ADMIN"))
    admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
    before = admin.get("/admin/experts").json()
    for call in (lambda: admin.post("/admin/experts", json={"name": "prover", "model": "math-model"}),
                 lambda: admin.delete("/admin/experts/coder"),
                 lambda: admin.put("/admin/task-map/code", json={"experts": ["generalist"]})):
        refused = call()
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["code"] == "persistence_unavailable" and "applied on no replica" in error["message"]
        assert refused.headers["retry-after"].isdigit()
    assert admin.get("/admin/experts").json() == before  # not applied here alone either
    assert before["edit_version"] == 0
    # requests are answered meanwhile: routing never waits for the shared log
    answer = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "model": "coe", "messages": [{"role": "user", "content": "write a python function that reverses a list"}]})
    assert answer.status_code == 200 and answer.headers["x-coe-expert"] == "coder"


def test_a_failing_poll_is_logged_once_and_keeps_the_pool(unreachable_edits, caplog):
    edits, replayed = unreachable_edits

    async def poll_a_while():
        task = asyncio.create_task(edits.poll(every_s=0.05))
        await asyncio.sleep(1.0)
        assert not task.done()  # a failure never ends the poll
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, logger="coe_router.serve.admin"):
        asyncio.run(poll_a_while())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot read the shared admin edits" in errors[0].getMessage()
    assert edits.version == 0 and replayed == []
