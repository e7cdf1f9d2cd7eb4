"""The `news` route, written in Python: headlines per symbol.

Build: `just build-plugins` (or, by hand, from this folder, in a virtual
environment where `pip install <ws-router>/sdk/python` installed the SDK:
`componentize-py -d ../../wit -w route-plugin componentize app -o news.wasm`).
"""

from datetime import timedelta

import ws_router
from models import Headline, NewsSubscriptionRequest


class News(ws_router.RouteDefinition):
    name = "news"
    version = "0.1.0"
    description = (
        "Headlines about the symbols you name. Subscribe with a list of symbols and "
        "a language; each update is one headline, published to news:<SYMBOL>:<language>."
    )
    tags = ["news"]
    Request = NewsSubscriptionRequest
    Data = Headline
    # A reader who reconnects gets the headlines missed meanwhile (an hour,
    # up to 100 per symbol and language). No snapshot: a new subscriber
    # wants new headlines, not a stale one at once.
    retention = ws_router.Retention(history_size=100, history_ttl=timedelta(hours=1))

    # The topic is the default (canonical) one; publications are routed per
    # symbol, so one headline reaches every subscription naming its symbol.
    def keys(self, request: NewsSubscriptionRequest, topic: str) -> list[str]:
        # A rule the schema cannot say: the message reaches the client.
        repeated = sorted({s for s in request.symbols if request.symbols.count(s) > 1})
        if repeated:
            raise ws_router.InvalidRequest(f"symbols listed twice: {', '.join(repeated)}")
        return [f"news:{symbol}:{request.language}" for symbol in request.symbols]


# The component's exports: componentize-py looks up one class per WIT
# interface in this module (`route` -> `Route`, `delivery` -> `Delivery`, and
# `Authorize` and `Retention`, which export() defines here too).
Route, Delivery = ws_router.export(News)
