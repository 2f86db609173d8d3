"""Tools workers can call: Python functions, MCP servers' tools and built-in ones."""

from foreman.errors import ToolError
from foreman.tools.base import RiskLevel, Tool, ToolContext, ToolSource
from foreman.tools.function import FunctionTool, tool
from foreman.tools.toolbox import Toolbox

__all__ = [
    "FunctionTool",
    "RiskLevel",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolSource",
    "Toolbox",
    "tool",
]
