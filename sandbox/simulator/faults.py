"""Seeded fault injection for the DRS and LWA routes (never the ``/__sim/`` control routes).

Each rule owns its generator, seeded when the rule is set, so the calls a rule picks depend only on its
seed and on how many calls of its endpoint(s) came before: a run repeats, whatever other routes do.
Not thread-safe on its own: the Simulator calls it under its lock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Operation names a rule may target (docs/api.md §3), one per DRS/LWA route family.
OPERATIONS = frozenset(
    {
        "replenish",
        "slotStatus",
        "deviceStatus",
        "subscriptionInfo",
        "deregistration",
        "getOrderInfo",
        "cancelTestOrders",
        "token",
        "tokeninfo",
    }
)
LWA_OPERATIONS = frozenset({"token", "tokeninfo"})
FAULT_STATUSES = frozenset({200, 400, 429, 500, 503})
DEFAULT_STATUS = 500
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Fault:
    """What a picked call suffers: a wall-clock wait, then ``status`` (200 means a slow success)."""

    status: int
    latency_ms: float


@dataclass
class FaultRule:
    """Pick calls with probability ``rate``; picked calls wait ``latency_ms`` then answer ``status``."""

    rate: float
    status: int = DEFAULT_STATUS
    latency_ms: float = 0.0
    seed: int = DEFAULT_SEED
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def to_json(self, endpoint: str | None) -> dict[str, object]:
        return {
            "endpoint": endpoint,
            "rate": self.rate,
            "status": self.status,
            "latencyMs": self.latency_ms,
            "seed": self.seed,
        }


class FaultInjector:
    """The fault rules in force: one per endpoint, plus one for every route (endpoint None)."""

    def __init__(self) -> None:
        self._rules: dict[str | None, FaultRule] = {}

    def set_rule(
        self,
        endpoint: str | None,
        rate: float,
        status: int = DEFAULT_STATUS,
        latency_ms: float = 0.0,
        seed: int = DEFAULT_SEED,
    ) -> None:
        """Replace the rule of ``endpoint`` (None: all routes); ``rate`` 0 removes it."""
        if rate <= 0:
            self._rules.pop(endpoint, None)
            return
        self._rules[endpoint] = FaultRule(rate=rate, status=status, latency_ms=latency_ms, seed=seed)

    def pick(self, operation: str) -> Fault | None:
        """Decide whether this call of ``operation`` is faulted; draws from the deciding rule only."""
        rule = self._rules.get(operation) or self._rules.get(None)
        if rule is None or rule.rng.random() >= rule.rate:
            return None
        return Fault(status=rule.status, latency_ms=rule.latency_ms)

    def to_json(self) -> list[dict[str, object]]:
        """The rules in force, the all-routes rule first."""
        ordered = sorted(self._rules.items(), key=lambda item: (item[0] is not None, item[0] or ""))
        return [rule.to_json(endpoint) for endpoint, rule in ordered]
