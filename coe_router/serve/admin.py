"""Experts managed over HTTP: CCoE's push and pop of experts, served (`coe serve` with $COE_ADMIN_TOKEN set).

    GET    /admin/experts              every expert, its model and its places in the task map
    POST   /admin/experts              {"name", "model", "tasks": [...], "rank": 0, "description", "style",
                                        "replace": false, "write_config": false}
    DELETE /admin/experts/{name}       ?write_config=true also removes it from the config file
    PUT    /admin/task-map/{task}      {"experts": [...]}: a new ranked list for one task ([] -> best average)

An edit is validated as `coe experts add|remove` validates it (the model must be one of the config's `models`,
the tasks the config's tasks), applies to the next request without a restart (the live pool swaps its task map
under a lock, routing/pool.py), shows in /v1/models as `coe/<name>`, and with `write_config` is written to the
config file by the CLI's atomic editor, so a restart keeps it. The admin API has its own token: off when
$COE_ADMIN_TOKEN is unset (404), 401 without it; the API token does not open it.

Replicas on one PostgreSQL (`persistence.checkpointer: postgres`) share their edits (serve/admin_edits.py): an edit
made on one is in the database before the call answers, and every other replica applies it within about a second,
or at its start; when the database cannot take the edit the call is a 503 and no replica applies it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from coe_router.config import ConfigError, ExpertSpec, RouterConfig, load_config
from coe_router.config.edit import add_expert, remove_expert
from coe_router.serve.protocol import ProtocolError

ADMIN_PREFIX = "/admin/"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class NewExpert(BaseModel):
    """The body of POST /admin/experts (`coe experts add`'s arguments)."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=NAME_PATTERN)
    model: str
    tasks: list[str] = Field(default_factory=list)
    rank: int = Field(0, ge=0)
    description: str = ""
    style: Literal["cot", "plain"] = "cot"
    system_prompt: str | None = None
    replace: bool = False
    write_config: bool = False


class Remap(BaseModel):
    model_config = {"extra": "forbid"}

    experts: list[str]
    write_config: bool = False


def expert_rows(pool) -> list[dict]:
    """Each expert of the live pool with its model and its places (1 = first) in the task map."""
    task_map = pool.task_map
    rows = []
    for name in pool.names():
        spec, _ = pool.expert(name)
        places = {task: ranked.index(name) + 1 for task, ranked in task_map.ranking.items() if name in ranked}
        rows.append({"expert": name, "model": spec.model, "style": spec.style, "description": spec.description,
                     "tasks": places, "best_average": task_map.default_expert == name})
    return rows


class ExpertAdmin:
    """The edits behind the admin routes, on the service's live pool and (optionally) its config file.
    `build_model(config, name)` makes a configured model that no expert used at start.

    Each edit is validated, then applied. With `shared` (serve/admin_edits.py: replicas on one PostgreSQL) it is
    also written to the shared log in between, so the other replicas replay it; the validation then runs under the
    log's lock, against the pool as every earlier edit left it. `replay` applies a logged edit here through the
    same validation."""

    def __init__(self, pool, config: RouterConfig, build_model, shared=None):
        self.pool, self.config, self.build_model, self.shared = pool, config, build_model, shared

    def add(self, body: NewExpert) -> dict:
        config = self.config
        if body.model not in config.models:
            raise ProtocolError(400, f"model {body.model!r} is not one of the config's models "
                                     f"({', '.join(sorted(config.models))})", "invalid_expert", "model")
        unknown = [t for t in body.tasks if t not in config.tasks]
        if unknown:
            raise ProtocolError(400, f"unknown task(s) {unknown} (tasks: {', '.join(config.tasks)})",
                                "invalid_expert", "tasks")
        spec = ExpertSpec(model=body.model, description=body.description, style=body.style,
                          system_prompt=body.system_prompt)
        built = []

        def prepare() -> None:
            if body.name in self.pool.names() and not body.replace:
                raise ProtocolError(409, f"expert {body.name!r} already exists (send \"replace\": true to update "
                                         "it)", "expert_exists", "name")
            built.append(self._model(body.model))  # before the edit is logged: a model that fails to build stops it
            if body.write_config:
                self._write(lambda path: (remove_expert(path, body.name) if body.name in load_config(path).experts
                                          else None, add_expert(path, body.name, body.model, body.tasks, body.rank,
                                                                body.description, body.style)))

        def apply() -> dict:
            self.pool.add(body.name, spec, built[-1], body.tasks, body.rank, replace=True)
            return next(row for row in expert_rows(self.pool) if row["expert"] == body.name)

        return self._edit({"op": "add", "expert": body.model_dump(exclude={"replace", "write_config"})},
                          prepare, apply)

    def remove(self, name: str, write_config: bool = False) -> None:
        def prepare() -> None:
            if name not in self.pool.names():
                raise ProtocolError(404, f"no expert {name!r} (experts: {', '.join(self.pool.names())})",
                                    "expert_not_found", "name")
            if len(self.pool.names()) == 1:
                raise ProtocolError(409, f"{name!r} is the last expert; a router needs at least one", "last_expert")
            if write_config:
                self._write(lambda path: remove_expert(path, name) if name in load_config(path).experts else None)

        self._edit({"op": "remove", "name": name}, prepare, lambda: self.pool.remove(name))

    def remap(self, task: str, body: Remap) -> dict:
        if task not in self.config.tasks:
            raise ProtocolError(404, f"no task {task!r} (tasks: {', '.join(self.config.tasks)})", "task_not_found")

        def prepare() -> None:
            missing = [e for e in body.experts if e not in self.pool.names()]
            if missing:
                raise ProtocolError(400, f"unknown expert(s) {missing}", "invalid_task_map", "experts")
            if body.write_config:
                raise ProtocolError(400, "write_config is not supported for a task-map remap: edit task_map in the "
                                         "config file", "invalid_task_map", "write_config")

        def apply() -> dict:
            self.pool.remap(task, body.experts)
            return {"task": task, "experts": list(self.pool.task_map.ranking.get(task, []))}

        return self._edit({"op": "remap", "task": task, "experts": list(body.experts)}, prepare, apply)

    def replay(self, edit: dict) -> None:
        """Apply an edit another replica logged (serve/admin_edits.py), validated as the route validates it, the
        config file left alone. Idempotent: an add replaces an expert of that name, a remove of an expert that is
        not here does nothing. Raises ProtocolError (or ValidationError) when the edit does not fit this pool."""
        op = edit.get("op")
        if op == "add":
            self.add(NewExpert(**{**edit["expert"], "replace": True}))
        elif op == "remove":
            if edit["name"] in self.pool.names():
                self.remove(edit["name"])
        elif op == "remap":
            self.remap(edit["task"], Remap(experts=edit["experts"]))
        else:
            raise ValueError(f"unknown admin edit {op!r}")

    def _edit(self, edit: dict, prepare, apply):
        if self.shared is None:
            prepare()
            return apply()
        return self.shared.commit(edit, prepare, apply)

    def _model(self, name: str):
        for expert in self.pool.names():
            spec, model = self.pool.expert(expert)
            if spec.model == name:
                return model
        return self.build_model(self.config, name)

    def _write(self, edit) -> None:
        if self.config.source is None:
            raise ProtocolError(400, "this service runs on the embedded default config: there is no file to write "
                                     "(write_config: false)", "no_config_file", "write_config")
        try:
            edit(self.config.source)
        except ConfigError as exc:
            raise ProtocolError(400, str(exc), "invalid_expert") from None
