"""The `equiv` route in Python; `../rust` and `../js` are the same route in
the other SDKs."""

import enum
from dataclasses import dataclass, field
from typing import Optional

import ws_router


@dataclass
class EquivRequest:
    """Ticks of one or more symbols."""

    symbols: list[str] = field(metadata={"description": "Ticker symbols, at least one."})
    depth: int = field(default=5, metadata={"description": "Levels per side."})
    tick: float = field(default=1.0, metadata={"description": "Price bucket."})
    venue: Optional[str] = field(default=None, metadata={"description": "Venue code; null for every venue."})


class Side(enum.Enum):
    """Which side initiated the trade."""

    BUY = "buy"
    SELL = "sell"


@dataclass
class Tick:
    """One tick."""

    symbol: str = field(metadata={"description": "Ticker symbol."})
    price: float
    side: Side
    time: int = field(metadata={"description": "Unix milliseconds."})


class Equiv(ws_router.RouteDefinition):
    name = "equiv"
    version = "0.1.0"
    description = "One route, written in Rust, Python and JavaScript: the three must be indistinguishable."
    tags = ["test"]
    delivery = "latest-value"
    # Snapshot only: a history would put per-run epochs in the replies compared.
    retention = ws_router.Retention(snapshot=True)
    Request = EquivRequest
    Data = Tick

    def keys(self, request: EquivRequest, topic: str) -> list[str]:
        if not request.symbols:
            raise ws_router.InvalidRequest("at least one symbol is required")
        return sorted({f"equiv:{s}" for s in request.symbols})


Route, Delivery = ws_router.export(Equiv)
