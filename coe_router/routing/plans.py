"""The planner: turns a query into a typed Plan of subtasks (CCoE expert planning).

Chat endpoints use structured output; local llama.cpp models generate under a JSON-schema grammar, so even a
tiny model returns something that parses. Whatever comes back is validated: a plan that does not parse or is
empty is reported (the graph then falls back to single-shot routing), steps beyond the limit are dropped, and a
subtask's task is kept only if it names a configured task: tasks decide experts, never model names.
"""

from __future__ import annotations

import json
import re

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.constants import TAG_NOSTREAM
from pydantic import ValidationError

from coe_router.models.llamacpp import LlamaCppChat
from coe_router.prompts.planner import format_planner_prompt
from coe_router.schema import Plan, Subtask

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class PlanError(ValueError):
    """The planner's output is not a usable plan."""


def parse_plan(text: str) -> Plan:
    found = _JSON_OBJECT.search(text)
    if not found:
        raise PlanError(f"no JSON object in the planner's reply: {text[:200]!r}")
    try:
        return Plan.model_validate(json.loads(found.group(0)))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise PlanError(f"planner reply is not a valid plan: {str(exc).splitlines()[0]}") from None


class Planner:
    def __init__(self, model: BaseChatModel, tasks: dict[str, str], max_steps: int = 4, auto: bool = False):
        self.model = model
        self.tasks = tasks
        self.max_steps = max_steps
        self.auto = auto

    def _ask(self, prompt: str) -> Plan:
        # nostream: traced, but its JSON is not streamed into a chat view as if it were the answer
        config = {"run_name": "planner", "tags": ["coe:planner", TAG_NOSTREAM], "metadata": {"role": "planner"}}
        # A local model generates under the grammar of `grammar_schema` (task names as an enum); a chat endpoint
        # gets the Plan schema itself.
        schema = self.grammar_schema() if isinstance(self.model, LlamaCppChat) else Plan
        try:
            structured = self.model.with_structured_output(schema)
        except NotImplementedError:
            reply = self.model.invoke([HumanMessage(prompt)], config=config)
            return parse_plan(reply.text)
        try:
            plan = structured.invoke([HumanMessage(prompt)], config=config)
            if isinstance(plan, dict):
                plan = Plan.model_validate(plan)
        except (ValidationError, ValueError) as exc:
            raise PlanError(f"planner output did not validate: {str(exc).splitlines()[0]}") from None
        if not isinstance(plan, Plan):
            raise PlanError("planner returned no plan")
        return plan

    def grammar_schema(self) -> dict:
        """The JSON schema a local model generates under: configured task names only, at most max_steps subtasks,
        and in plan mode at least two (a tiny model otherwise tends to copy the request as its only step)."""
        subtask = {"type": "object", "properties": {"text": {"type": "string", "minLength": 3},
                                                     "task": {"enum": list(self.tasks)}},
                   "required": ["text", "task"]}
        subtasks = {"type": "array", "items": subtask, "minItems": 1 if self.auto else min(2, self.max_steps),
                    "maxItems": self.max_steps}
        return {"type": "object", "properties": {"subtasks": subtasks}, "required": ["subtasks"]}

    def __call__(self, query: str) -> tuple[Plan, str]:
        """The plan and a status: "planned", "planned (trimmed to N steps)", "single" or "fallback: <why>"."""
        try:
            plan = self._ask(format_planner_prompt(query, self.tasks, self.max_steps, self.auto))
        except PlanError as exc:
            return Plan(subtasks=[Subtask(text=query)]), f"fallback: {exc}"
        subtasks = [
            Subtask(text=s.text.strip(), task=s.task if s.task in self.tasks else None)
            for s in plan.subtasks if s.text.strip()
        ]
        if not subtasks:
            return Plan(subtasks=[Subtask(text=query)]), "fallback: the plan has no subtasks"
        status = "planned"
        if len(subtasks) > self.max_steps:
            subtasks, status = subtasks[: self.max_steps], f"planned (trimmed to {self.max_steps} steps)"
        if len(subtasks) == 1:
            return Plan(subtasks=[Subtask(text=query, task=subtasks[0].task)]), "single"
        return Plan(subtasks=subtasks), status
