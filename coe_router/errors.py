"""The errors a caller of the router handles, importable from one place (`from coe_router import ...`)."""

from coe_router.graphs.context import InvalidContextError
from coe_router.inputs import InvalidQueryError
from coe_router.routing.context_window import QueryTooLongError
from coe_router.routing.expert_call import ToolsUnsupportedError, TruncatedAnswerError
from coe_router.routing.fallback import AnswerInterruptedError, ExpertsFailedError, ExpertsUnavailableError

__all__ = ["AnswerInterruptedError", "ExpertsFailedError", "ExpertsUnavailableError", "InvalidContextError",
           "InvalidQueryError", "QueryTooLongError", "ToolsUnsupportedError", "TruncatedAnswerError"]
