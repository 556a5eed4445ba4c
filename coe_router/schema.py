"""Typed values that flow through the graph and out of every API: examples, task decisions, routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from coe_router.defaults import UNKNOWN_TASK


class LabelledExample(BaseModel):
    """A question with its task label (one line of questions.jsonl)."""

    id: str
    question: str
    task: str


class RetrievedExample(LabelledExample):
    """A labelled example found near the query; `score` is cosine similarity (CoE-Ops eq. 13 on unit vectors)."""

    score: float


class TaskDecision(BaseModel):
    """The classifier's answer: a task (or "unknown"), how sure it is, and how it was reached."""

    task: str = UNKNOWN_TASK
    confidence: float = 0.0
    source: str = "none"
    candidates: dict[str, float] = Field(default_factory=dict)
    tasks: list[str] = Field(default_factory=list, description="every matched task (rule-based gating)")


class Route(BaseModel):
    """The router's answer: the expert to call and the ranked experts to try if it fails."""

    expert: str
    fallbacks: list[str] = Field(default_factory=list)
    reason: str = ""
    consult: list[str] = Field(default_factory=list, description="experts asked in parallel (fan-out), best first")


class Candidate(BaseModel):
    """An expert the router weighed: its leaderboard accuracy on the task and its price per 1M tokens."""

    expert: str
    expected_score: float | None = None
    price: float | None = None


class RoutingDecision(BaseModel):
    """Everything that decided where a query went; returned with every answer and shown in Studio and traces."""

    task: str
    confidence: float
    classifier: str
    retrieved: list[RetrievedExample] = Field(default_factory=list)
    expert: str
    fallbacks: list[str] = Field(default_factory=list)
    tried: list[str] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict)
    task_map_version: str = ""
    consulted: list["Consultation"] = Field(default_factory=list)
    aggregation: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict, description="what the run's context chose")
    candidates: list[Candidate] = Field(default_factory=list, description="experts weighed by a cost-aware route")


class Consultation(BaseModel):
    """One expert's answer in a fan-out (CCoE gating): what it said, or why it failed."""

    expert: str
    task: str
    rank: int
    answer: str = ""
    choice: str | None = None
    error: str | None = None


class Subtask(BaseModel):
    """One step of a plan: its text and, optionally, the task the planner thinks it is (a configured task name)."""

    text: str = Field(min_length=1)
    task: str | None = None


class Plan(BaseModel):
    """The planner's ordered subtasks (CCoE expert planning)."""

    subtasks: list[Subtask] = Field(min_length=1)


class Step(BaseModel):
    """A planned subtask after it ran: which task and expert it went to and what came out."""

    text: str
    task: str
    expert: str
    output: str
