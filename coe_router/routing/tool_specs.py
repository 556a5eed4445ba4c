"""What a request's tools must be before any expert is given them: OpenAI function tools, each with a name.

A malformed tool fails inside LangChain before any upstream is called (a function with no name is a KeyError, a
type it cannot convert a ValueError), and a built-in tool type (`web_search`, ...) makes langchain-openai call the
upstream's Responses API instead of chat completions. Either way the request is at fault, the same for every
expert: unchecked, every expert on the route failed with it and each failure counted towards that expert's
circuit breaker, so three such requests opened every breaker and turned everyone's requests away. Checked once,
before routing, it is one clear error naming the tool.
"""

from __future__ import annotations

from typing import Any

from coe_router.inputs import InvalidQueryError

TOOL_CHOICE_MODES = ("none", "auto", "required")
NEED_NO_TOOLS = ("none", "auto")  # modes that ask for nothing without tools (some clients always send one)


class InvalidToolsError(InvalidQueryError):
    """The request's tools are not something any expert can be given."""


def tools_problem(tools: Any) -> str | None:
    """Why `tools` cannot be bound to an expert (naming the first bad tool), or None when they can."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        return f"tools must be a list of function tools, got {type(tools).__name__}"
    for number, tool in enumerate(tools):
        where = f"tools[{number}]"
        if not isinstance(tool, dict):
            return f"{where} must be an object, got {type(tool).__name__}"
        if tool.get("type") != "function":
            return (f"{where}: type {tool.get('type')!r} is not supported: experts are given function tools "
                    '({"type": "function", "function": {"name": ..., "parameters": {...}}})')
        function = tool.get("function")
        if not isinstance(function, dict):
            return f"{where}.function must be an object with a `name`"
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():  # what else a name may hold is the upstream's rule
            return f"{where}.function.name must be a non-empty string, got {name!r}"
        if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
            return f"{where}.function.parameters must be a JSON Schema object"
        if function.get("description") is not None and not isinstance(function["description"], str):
            return f"{where}.function.description must be a string"
    return None


def tool_choice_problem(tool_choice: Any, tools: list[dict] | None) -> str | None:
    """Why an OpenAI `tool_choice` cannot be honoured with `tools`: `required` or a named function needs tools, and
    a named function must be one of them; `none` and `auto` ask for nothing when there are none."""
    if tool_choice is None or (not tools and tool_choice in NEED_NO_TOOLS):
        return None
    if not tools:
        return f"tool_choice {tool_choice!r} needs tools: the request has none"
    if isinstance(tool_choice, str):
        return None if tool_choice in TOOL_CHOICE_MODES else (
            f"tool_choice must be one of {', '.join(TOOL_CHOICE_MODES)} or a function, got {tool_choice!r}")
    names = {tool["function"]["name"] for tool in tools}
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(tool_choice, dict) or tool_choice.get("type") != "function" or name is None:
        return 'tool_choice must be {"type": "function", "function": {"name": ...}} or a mode'
    if name not in names:
        return f"tool_choice names {name!r}, which is not one of the tools ({', '.join(sorted(names))})"
    return None


def check_tools(tools: Any) -> None:
    """Raise InvalidToolsError when `tools` cannot be bound to an expert."""
    problem = tools_problem(tools)
    if problem is not None:
        raise InvalidToolsError(problem)
