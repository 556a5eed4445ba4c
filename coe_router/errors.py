"""The errors a caller of the router handles, importable from one place (`from coe_router import ...`)."""

from coe_router.graphs.context import InvalidContextError
from coe_router.inputs import InvalidQueryError
from coe_router.routing.context_window import QueryTooLongError
from coe_router.routing.expert_call import ToolsUnsupportedError, TruncatedAnswerError
from coe_router.routing.fallback import AnswerInterruptedError, ExpertsFailedError, ExpertsUnavailableError
from coe_router.routing.tool_specs import InvalidToolsError

__all__ = ["AnswerInterruptedError", "ExpertsFailedError", "ExpertsUnavailableError", "InvalidContextError",
           "InvalidQueryError", "InvalidToolsError", "QueryTooLongError", "ToolsUnsupportedError",
           "TruncatedAnswerError"]
