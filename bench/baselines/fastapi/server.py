"""Baseline: the earlier design's stack, FastAPI + fastws, served by uvicorn.

Speaks the same envelope, topics and publish endpoint as ws-router for the
`bars` route, written the way the earlier design wrote it: pydantic models,
`FastWS.send` handlers for subscribe/unsubscribe, `FastWS.server_send` for
updates (which broadcasts to every client whose topic set holds the topic).

Run: uvicorn server:app --host 127.0.0.1 --port 8101 --log-level warning
"""

import json
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastws import Client, FastWS
from fastws.routing import Message
from pydantic import BaseModel, ConfigDict


class BarsSubscriptionRequest(BaseModel):
    symbol: str
    resolution: str = "1"


class Bar(BaseModel):
    # Extra fields (the benchmark's timestamp and padding) pass through.
    model_config = ConfigDict(extra="allow")
    time: int
    open: float
    high: float
    low: float
    close: float
    volume: int = 0


class Reply(BaseModel):
    status: str
    message: str
    topic: str


class BarUpdate(BaseModel):
    topic: str
    payload: Bar


def topic_of(request: BaseModel) -> str:
    return "bars:" + json.dumps(request.model_dump(), sort_keys=True, separators=(",", ":"))


service = FastWS()


@service.send("bars.subscribe", reply="bars.subscribe.response")
async def subscribe(payload: BarsSubscriptionRequest, client: Client) -> Reply:
    topic = topic_of(payload)
    client.subscribe(topic)
    return Reply(status="ok", message="Subscribed", topic=topic)


@service.send("bars.unsubscribe", reply="bars.unsubscribe.response")
async def unsubscribe(payload: BarsSubscriptionRequest, client: Client) -> Reply:
    topic = topic_of(payload)
    client.unsubscribe(topic)
    return Reply(status="ok", message="Unsubscribed", topic=topic)


@service.recv("bars.update")
async def update(payload: BarUpdate) -> BarUpdate:
    return payload


app = FastAPI()
service.setup(app)


@app.websocket("/api/v1/ws")
async def ws(client: Client = Depends(service.manage)):
    await service.serve(client)


@app.post("/api/v1/publish")
async def publish(request: Request) -> dict[str, Any]:
    body = await request.json()
    items = body if isinstance(body, list) else [body]
    results = []
    for item in items:
        topic = item["topic"]
        message = Message(type="bars.update", payload={"topic": topic, "payload": item["data"]})
        await service.server_send(message, topic=topic)
        results.append({"status": "ok", "route": item.get("route"), "topics": [topic]})
    return {"results": results, "failed": 0}
