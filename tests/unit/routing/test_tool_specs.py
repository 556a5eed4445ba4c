"""The tools a request may carry: OpenAI function tools with a name; anything else is named before routing."""

from __future__ import annotations

import pytest

from coe_router.routing.tool_specs import InvalidToolsError, check_tools, tool_choice_problem, tools_problem

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("tools", [
    None, [], [WEATHER], [WEATHER, {"type": "function", "function": {"name": "f-2"}}],
    # names OpenAI itself would refuse are the upstream's to judge (vLLM, Ollama and llama.cpp take them)
    [{"type": "function", "function": {"name": "fs.read"}}],
    [{"type": "function", "function": {"name": "Person Info"}}],
    [{"type": "function", "function": {"name": "Résumé", "description": None, "parameters": None}}],
])
def test_function_tools_pass(tools):
    assert tools_problem(tools) is None


@pytest.mark.parametrize(("tools", "named"), [
    ({"type": "function"}, "tools must be a list"),
    (["get_weather"], "tools[0] must be an object"),
    ([WEATHER, {"type": "web_search"}], "tools[1]: type 'web_search' is not supported"),
    ([{"type": "custom", "custom": {"name": "grammar"}}], "tools[0]: type 'custom'"),
    ([{"function": {"name": "f"}}], "tools[0]: type None"),
    ([{"type": "function"}], "tools[0].function must be an object"),
    ([{"type": "function", "function": {"parameters": {}}}], "tools[0].function.name must be a non-empty string"),
    ([{"type": "function", "function": {"name": " "}}], "got ' '"),
    ([{"type": "function", "function": {"name": 3}}], "tools[0].function.name"),
    ([{"type": "function", "function": {"name": "f", "parameters": "object"}}], "parameters must be a JSON Schema"),
    ([{"type": "function", "function": {"name": "f", "description": 3}}], "description must be a string"),
])
def test_anything_else_is_named(tools, named):
    assert named in tools_problem(tools)
    with pytest.raises(InvalidToolsError, match=named.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        check_tools(tools)


@pytest.mark.parametrize("choice", [None, "none", "auto", "required",
                                    {"type": "function", "function": {"name": "get_weather"}}])
def test_tool_choices_that_can_be_honoured(choice):
    assert tool_choice_problem(choice, [WEATHER]) is None


@pytest.mark.parametrize("tools", [None, []])
@pytest.mark.parametrize("choice", [None, "none", "auto"])
def test_modes_that_ask_for_nothing_need_no_tools(choice, tools):
    assert tool_choice_problem(choice, tools) is None


@pytest.mark.parametrize(("choice", "tools", "named"), [
    ("required", None, "tool_choice 'required' needs tools"),
    ("required", [], "tool_choice 'required' needs tools"),
    ({"type": "function", "function": {"name": "get_weather"}}, None, "needs tools: the request has none"),
    ("sometimes", [WEATHER], "one of none, auto, required"),
    ({"type": "function", "function": {"name": "get_time"}}, [WEATHER], "'get_time', which is not one of the tools"),
    ({"type": "function"}, [WEATHER], 'tool_choice must be {"type": "function"'),
    (["auto"], [WEATHER], 'tool_choice must be {"type": "function"'),
])
def test_tool_choices_that_cannot(choice, tools, named):
    assert named in tool_choice_problem(choice, tools)
