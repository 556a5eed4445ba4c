"""The errors a caller of the router handles, importable from one place (`from coe_router import ...`)."""

from coe_router.graphs.context import InvalidContextError
from coe_router.inputs import InvalidQueryError
from coe_router.nodes.expert import ExpertsFailedError
from coe_router.routing.context_window import QueryTooLongError
from coe_router.routing.expert_call import ToolsUnsupportedError

__all__ = ["ExpertsFailedError", "InvalidContextError", "InvalidQueryError", "QueryTooLongError",
           "ToolsUnsupportedError"]
