"""The router's config: its sections (`schema`), reading a file (`load`) and safe edits of a file (`edit`)."""

from coe_router.config.load import ConfigError, default_config_path, load_config, load_task_map_file
from coe_router.config.schema import (
                                      ClassifierSpec,
                                      ExpertSpec,
                                      LimitsSpec,
                                      LlamaCppModel,
                                      OpenAIModel,
                                      PersistenceSpec,
                                      PlannerSpec,
                                      RetrieverSpec,
                                      RouterConfig,
                                      TaskMapFile,
)
from coe_router.defaults import UNKNOWN_TASK

__all__ = [
    "ClassifierSpec", "ConfigError", "ExpertSpec", "LimitsSpec", "LlamaCppModel", "OpenAIModel", "PersistenceSpec",
    "PlannerSpec", "RetrieverSpec", "RouterConfig", "TaskMapFile", "UNKNOWN_TASK", "default_config_path",
    "load_config", "load_task_map_file",
]
