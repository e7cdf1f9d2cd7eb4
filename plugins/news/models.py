"""The news route's models: what clients send, what updates carry."""

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class NewsSubscriptionRequest:
    """Headlines about one or more symbols, in one language."""

    symbols: list[str] = field(
        metadata={"minItems": 1, "maxItems": 50, "description": "Ticker symbols, e.g. [\"AAPL\"]."}
    )
    language: Literal["en", "de", "fr"] = field(
        default="en", metadata={"description": "Language of the headlines."}
    )


@dataclass
class Headline:
    """One headline."""

    time: int = field(metadata={"description": "Publication time, Unix milliseconds."})
    symbol: str
    title: str
    url: Optional[str] = None
    sentiment: float = field(default=0.0, metadata={"minimum": -1, "maximum": 1})
