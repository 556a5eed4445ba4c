import pytest

from coe_router.config import ExpertSpec
from coe_router.nodes import ExpertsFailedError, make_expert_node
from coe_router.prompts import extract_choice
from coe_router.routing.pool import ExpertPool
from coe_router.routing.task_map import TaskMap
from coe_router.schema import Route, RoutingDecision
from tests.fakes import FailingChat, FakeScorer, LocalFakeChat, ScriptedChat

MAP = TaskMap(ranking={"math": ["mathematician", "generalist"], "code": ["coder"]}, default_expert="generalist")


def test_route_known_task_keeps_ranked_fallbacks():
    route = MAP.route("math")
    assert route.expert == "mathematician"
    assert route.fallbacks == ["generalist", "coder"]


def test_unknown_task_goes_to_best_average_expert():
    route = MAP.route("unknown")
    assert route.expert == "generalist" and "best-average" in route.reason
    assert set(route.fallbacks) == {"mathematician", "coder"}


def test_task_map_version_changes_with_the_map():
    other = TaskMap(ranking={"math": ["generalist"], "code": ["coder"]}, default_expert="generalist")
    assert MAP.version != other.version and len(MAP.version) == 12


def state(expert, fallbacks, options=None):
    decision = RoutingDecision(task="math", confidence=0.9, classifier="knn", expert=expert, fallbacks=fallbacks)
    return {"query": "2+2?", "options": options, "route": Route(expert=expert, fallbacks=fallbacks), "decision": decision}


EXPERTS = {"a": ExpertSpec(model="ma"), "b": ExpertSpec(model="mb"), "c": ExpertSpec(model="mc")}


def expert_node(experts, models):
    """The node as a function of the state alone (no tracer, no run config)."""
    task_map = TaskMap(ranking={}, default_expert=next(iter(experts)))
    node = make_expert_node(ExpertPool(experts, models, task_map))
    return lambda state: node.invoke(state, {})


def test_expert_falls_back_and_records_failures():
    models = {"ma": FailingChat(), "mb": ScriptedChat(reply=lambda p: "four", seen=[]), "mc": FailingChat()}
    out = expert_node(EXPERTS, models)(state("a", ["b", "c"]))
    assert out["answer"] == "four"
    assert out["decision"].expert == "b"
    assert out["decision"].tried == ["a", "b"]
    assert "connection refused" in out["decision"].errors["a"]


def test_empty_answer_moves_on_to_the_next_expert():
    models = {"ma": ScriptedChat(reply=lambda p: "  \n", seen=[]), "mb": ScriptedChat(reply=lambda p: "four", seen=[]),
              "mc": FailingChat()}
    out = expert_node(EXPERTS, models)(state("a", ["b"]))
    assert out["answer"] == "four" and out["decision"].expert == "b"
    assert "empty answer" in out["decision"].errors["a"]


def test_all_experts_failing_names_each():
    models = {"ma": FailingChat(), "mb": FailingChat(error="timeout"), "mc": FailingChat()}
    with pytest.raises(ExpertsFailedError) as error:
        expert_node(EXPERTS, models)(state("a", ["b"]))
    assert set(error.value.errors) == {"a", "b"}
    assert "b: ConnectionError: timeout" in str(error.value)


def test_multiple_choice_on_chat_model_uses_cot_prompt_and_extracts_letter():
    model = ScriptedChat(reply=lambda p: "2+2 is 4. So the answer is (B).", seen=[])
    out = expert_node({"a": ExpertSpec(model="ma")}, {"ma": model})(state("a", [], ["3", "4", "5"]))
    assert out["choice"] == "B"
    assert "Think step by step" in model.seen[0] and "B. 4" in model.seen[0]


def test_multiple_choice_on_local_model_scores_letters():
    scorer = FakeScorer({"A": -2.0, "B": -0.1, "C": -3.0})
    out = expert_node({"a": ExpertSpec(model="ma")}, {"ma": LocalFakeChat(local=scorer, seen=[])})(
        state("a", [], ["3", "4", "5"]))
    assert out["choice"] == "B" and out["answer"] == "(B) 4"
    assert scorer.prompts[0].endswith("Answer: (")


@pytest.mark.parametrize(
    "text, n, letter",
    [("the answer is (C)", 4, "C"), ("The answer is D.", 4, "D"), ("Answer: A", 4, "A"),
     ("the answer is (Z)", 4, None), ("no idea", 4, None), ("the answer is (A) ... the answer is (B)", 4, "B")],
)
def test_extract_choice(text, n, letter):
    assert extract_choice(text, n) == letter
