"""Admin edits across replicas (serve/admin_edits.py): real `coe serve` processes on one real PostgreSQL (pgserver),
their experts a real OpenAI-compatible process (tests/service_upstream.py). An expert added, a task remapped or an
expert removed through one replica's admin API is listed, offered in /v1/models and routed to by the other within
about a second, without a restart; a replica started after the edits has them all. Then the shared log itself, in
this process, on the same database: concurrent edits from two replicas in one order, a row that does not fit
skipped, a late replica catching up to the same pool."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import openai
import pytest

from bench.replicas import postgres_server
from coe_router import load_config
from coe_router.builder import expert_pool
from coe_router.serve.admin import ExpertAdmin, NewExpert, Remap, expert_rows
from coe_router.serve.admin_edits import SharedEdits
from coe_router.serve.protocol import ProtocolError
from tests.fakes import ScriptedChat
from tests.integration.test_operations import _model, ops_config
from tests.service_upstream import CoeServe, Upstream
from tests.unit.conftest import CONFIG, write_config

pytestmark = pytest.mark.integration

ADMIN = "coe-replica-admin-41d8"
SCRIBE_SAYS = "the scribe has written it down"
DEADLINE_S = 10.0  # the longest the tests wait for an edit to reach another replica (it takes about a second)
DELAYS: list[float] = []


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as dsn:
        yield dsn


def _config(up: Upstream) -> dict:
    """The operations config on PostgreSQL, with one model no expert uses at start (a replica replaying an edit
    onto it builds it)."""
    config = ops_config(up)
    config["models"]["m-scribe"] = _model(f"say:{SCRIBE_SAYS}", up.url)
    return {**config, "persistence": {"checkpointer": "postgres"}}


@pytest.fixture(scope="module")
def replicas(upstream, postgres, tmp_path_factory):
    folder = tmp_path_factory.mktemp("admin-replicas")
    env = {"COE_POSTGRES_DSN": postgres, "COE_ADMIN_TOKEN": ADMIN}
    started = [CoeServe(_config(upstream), folder, f"replica-{i}", env=env).start() for i in range(2)]
    try:
        for replica in started:
            replica.wait()
        yield {"urls": [replica.url for replica in started], "folder": folder, "env": env}
    finally:
        for replica in started:
            replica.stop()
    if DELAYS:
        print(f"\nadmin edits reached the other replica in {', '.join(f'{d:.2f}' for d in DELAYS)} s")


def _admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=60)


def _listed(url: str) -> dict:
    return _admin(url).get("/admin/experts").json()


def _rows(url: str) -> dict[str, dict]:
    return {row["expert"]: row for row in _listed(url)["experts"]}


def _menu(url: str) -> list[str]:
    return [m.id for m in openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0).models.list()]


def _routed(url: str, content: str) -> tuple[str, str]:
    raw = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0).chat.completions.with_raw_response \
        .create(model="coe", messages=[{"role": "user", "content": content}])
    return raw.headers["x-coe-expert"], raw.parse().choices[0].message.content


def _within(check, what: str) -> float:
    """Seconds until `check()` holds, polled every 50 ms; fails after DEADLINE_S."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < DEADLINE_S, f"{what}: not within {DEADLINE_S} s"
        time.sleep(0.05)
    delay = time.monotonic() - start
    DELAYS.append(delay)
    return delay


def test_an_edit_on_one_replica_reaches_the_other_without_a_restart(replicas):
    a, b = replicas["urls"]
    assert _routed(b, "tell me about the roman senate")[0] == "answerer"

    added = _admin(a).post("/admin/experts", json={"name": "historian", "model": "m-scribe", "tasks": ["history"],
                                                   "rank": 0, "style": "plain"})
    assert added.status_code == 200, added.text
    assert "historian" in _rows(a) and "coe/historian" in _menu(a)  # the replica that took the call: at once
    _within(lambda: "historian" in _rows(b), "B lists the expert added on A")
    assert _rows(b)["historian"] == added.json()
    assert "coe/historian" in _menu(b)
    assert _routed(b, "tell me about the roman senate") == ("historian", SCRIBE_SAYS)  # its model built on B

    remapped = _admin(a).put("/admin/task-map/history", json={"experts": ["answerer", "historian"]})
    assert remapped.status_code == 200, remapped.text
    _within(lambda: _rows(b)["historian"]["tasks"] == {"history": 2}, "B sees the remap made on A")
    assert _routed(b, "tell me about the roman senate")[0] == "answerer"

    assert _admin(b).delete("/admin/experts/historian").status_code == 200
    _within(lambda: "historian" not in _rows(a), "A drops the expert removed on B")
    assert "coe/historian" not in _menu(a)
    assert _routed(a, "tell me about the roman senate")[0] == "answerer"
    assert _admin(a).delete("/admin/experts/historian").status_code == 404
    assert _listed(a)["edit_version"] == _listed(b)["edit_version"] >= 3
    assert _rows(a) == _rows(b)


def test_an_edit_is_validated_against_every_earlier_edit_whichever_replica_made_it(replicas):
    """The second call comes at once, before the other replica's poll: its replica catches up under the log's lock
    before it validates."""
    a, b = replicas["urls"]
    assert _admin(a).post("/admin/experts", json={"name": "clerk", "model": "m-free"}).status_code == 200
    twice = _admin(b).post("/admin/experts", json={"name": "clerk", "model": "m-answer"})
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "expert_exists"
    assert _admin(b).delete("/admin/experts/clerk").status_code == 200
    stale = _admin(a).put("/admin/task-map/math", json={"experts": ["clerk"]})
    assert stale.status_code == 400 and "clerk" in stale.json()["error"]["message"]
    assert "clerk" not in _rows(a)


def test_a_replica_started_after_the_edits_has_them(replicas, upstream):
    a, b = replicas["urls"]
    assert _admin(a).post("/admin/experts", json={"name": "scribe", "model": "m-scribe", "tasks": ["math"],
                                                  "style": "plain"}).status_code == 200
    assert _admin(b).put("/admin/task-map/history", json={"experts": ["unpriced", "answerer"]}).status_code == 200
    late = CoeServe(_config(upstream), replicas["folder"], "replica-late", env=replicas["env"]).start()
    try:
        c = late.wait().url
        assert _rows(c)["scribe"]["tasks"] == {"math": 1} and _rows(c)["unpriced"]["tasks"] == {"history": 1}
        assert "clerk" not in _rows(c) and "historian" not in _rows(c)  # added, then removed, earlier
        assert _routed(c, "what is the integral of x squared?") == ("scribe", SCRIBE_SAYS)
        _within(lambda: _rows(b).keys() == _rows(c).keys(), "B has the expert A added")
        assert _rows(c) == _rows(a) == _rows(b)
        assert _listed(c)["edit_version"] == _listed(a)["edit_version"]
    finally:
        late.stop()


# -- the shared log in this process -------------------------------------------------------------------------------

SPARE = {"provider": "openai", "model": "spare", "base_url": "http://127.0.0.1:9/v1"}


class Replica:
    """A replica's live pool and admin, on the shared log in `table`."""

    def __init__(self, config, psycopg_pool, table: str):
        self.config = config
        self.pool = expert_pool(config, {name: ScriptedChat(seen=[]) for name in CONFIG["models"]})
        self.edits = SharedEdits(psycopg_pool, ExpertAdmin(self.pool, config, self.build_model).replay, table)
        self.admin = ExpertAdmin(self.pool, config, self.build_model, self.edits)

    def build_model(self, config, name):
        return ScriptedChat(seen=[])

    def state(self):
        return expert_rows(self.pool), self.pool.task_map.ranking


@pytest.fixture
def shared(postgres, tmp_path):
    """Replicas on one table of their own (so each test starts from an empty log)."""
    from psycopg_pool import ConnectionPool

    config = load_config(write_config(tmp_path, models={**CONFIG["models"], "spare-model": SPARE}))
    table = f"coe_admin_edits_{uuid.uuid4().hex[:8]}"
    pools = []

    def replica() -> Replica:
        pool = ConnectionPool(postgres, min_size=1, max_size=2, kwargs={"autocommit": True}, timeout=10, open=True)
        pools.append(pool)
        made = Replica(config, pool, table)
        made.edits.setup()
        made.edits.catch_up()
        return made

    yield replica
    for pool in pools:
        pool.close()


def test_concurrent_edits_on_two_replicas_land_in_one_order_on_both(shared):
    x, y = shared(), shared()
    failures: list[BaseException] = []

    def edit(replica: Replica, prefix: str) -> None:
        try:
            for i in range(6):
                replica.admin.add(NewExpert(name=f"{prefix}{i}", model="spare-model", tasks=["math"], rank=0))
                if i % 2:
                    replica.admin.remap("code", Remap(experts=[f"{prefix}{i}", "coder"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=edit, args=(x, "x")), threading.Thread(target=edit, args=(y, "y"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    x.edits.catch_up()
    y.edits.catch_up()
    assert x.edits.version == y.edits.version
    assert x.state() == y.state()
    ranked = x.pool.task_map.ranking["math"]
    assert sorted(ranked[:12]) == sorted([f"x{i}" for i in range(6)] + [f"y{i}" for i in range(6)])
    with x.edits.pool.connection() as conn:
        versions = [row[0] for row in conn.execute(f"SELECT version FROM {x.edits.table} ORDER BY version")]
    assert len(versions) == 18 and versions[-1] == x.edits.version
    late = shared()  # a replica started now replays the 18 edits onto the config's pool: the same state
    assert late.edits.version == x.edits.version and late.state() == x.state()


def test_an_edit_is_refused_against_the_log_not_a_stale_pool(shared):
    x, y = shared(), shared()
    x.admin.add(NewExpert(name="prover", model="spare-model", tasks=["math"]))
    assert "prover" not in y.pool.names()  # y has not caught up yet (no poll runs here)
    with pytest.raises(ProtocolError) as caught:
        y.admin.add(NewExpert(name="prover", model="math-model"))
    assert caught.value.status == 409
    assert "prover" in y.pool.names() and y.pool.expert("prover")[0].model == "spare-model"  # caught up on the way
    assert y.edits.version == x.edits.version == 1  # the refused edit wrote nothing


def test_a_row_that_does_not_fit_is_skipped_and_the_rows_after_it_applied(shared, caplog):
    x = shared()
    from psycopg.types.json import Jsonb

    with x.edits.pool.connection() as conn:
        conn.execute(f"INSERT INTO {x.edits.table} (edit) VALUES (%s)",
                     (Jsonb({"op": "add", "expert": {"name": "ghost", "model": "no-such-model"}}),))
    x.admin.add(NewExpert(name="prover", model="spare-model"))
    assert "ghost" not in x.pool.names() and "prover" in x.pool.names() and x.edits.version == 2
    assert any("admin edit 1" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    again = shared()
    assert again.state() == x.state() and again.edits.version == 2
