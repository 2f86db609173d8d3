"""Workers: the spec of a stateless specialist, the registry, and team files."""

from foreman.workers.default_team import DEFAULT_WORKERS
from foreman.workers.registry import Registry, load_team
from foreman.workers.spec import RetryPolicy, RiskLevel, Worker

__all__ = ["DEFAULT_WORKERS", "Registry", "RetryPolicy", "RiskLevel", "Worker", "load_team"]
