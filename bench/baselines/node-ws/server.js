// Baseline: a minimal Node.js fan-out with the `ws` package.
//
// Same envelope, topics and publish endpoint as ws-router for the `bars`
// route; no validation beyond what it needs to route. Each publication is
// encoded once into a Buffer and that Buffer is sent to every subscriber.
//
// Run: node server.js <port>
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8102);
const topics = new Map(); // topic -> Set<WebSocket>

function canonical(value) {
  if (value === null) return '""';
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']';
  if (typeof value === 'object') {
    return '{' + Object.keys(value).sort()
      .map((k) => JSON.stringify(k) + ':' + canonical(value[k])).join(',') + '}';
  }
  return JSON.stringify(value);
}

function topicOf(route, request) {
  const req = Object.assign({}, request);
  if (route === 'bars' && req.resolution === undefined) req.resolution = '1';
  return route + ':' + canonical(req);
}

function reply(ws, type, payload) {
  ws.send(JSON.stringify({ type, payload }));
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/api/v1/publish') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'error', message: String(e) }));
      return;
    }
    const items = Array.isArray(body) ? body : [body];
    const results = [];
    let delivered = 0;
    for (const item of items) {
      const subs = topics.get(item.topic);
      let n = 0;
      if (subs && subs.size > 0) {
        const frame = Buffer.from(JSON.stringify({
          type: item.route + '.update',
          payload: { topic: item.topic, payload: item.data },
        }));
        for (const ws of subs) {
          ws.send(frame, { binary: false });
          n++;
        }
      }
      delivered += n;
      results.push({ status: 'ok', route: item.route, topics: [item.topic], delivered: n });
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ results, delivered, failed: 0 }));
  });
});

const wss = new WebSocketServer({ server, path: '/api/v1/ws', perMessageDeflate: false });
wss.on('connection', (ws) => {
  const mine = new Set();
  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch (e) {
      reply(ws, 'error', { status: 'error', message: 'frame is not valid JSON' });
      return;
    }
    const dot = typeof msg.type === 'string' ? msg.type.lastIndexOf('.') : -1;
    const route = dot > 0 ? msg.type.slice(0, dot) : '';
    const op = dot > 0 ? msg.type.slice(dot + 1) : '';
    if (op !== 'subscribe' && op !== 'unsubscribe') {
      reply(ws, 'error', { status: 'error', message: 'unknown operation' });
      return;
    }
    const topic = topicOf(route, msg.payload || {});
    if (op === 'subscribe') {
      let subs = topics.get(topic);
      if (!subs) topics.set(topic, (subs = new Set()));
      subs.add(ws);
      mine.add(topic);
      reply(ws, route + '.subscribe.response', { status: 'ok', message: 'Subscribed', topic });
    } else {
      const subs = topics.get(topic);
      if (subs) {
        subs.delete(ws);
        if (subs.size === 0) topics.delete(topic);
      }
      mine.delete(topic);
      reply(ws, route + '.unsubscribe.response', { status: 'ok', message: 'Unsubscribed', topic });
    }
  });
  ws.on('close', () => {
    for (const topic of mine) {
      const subs = topics.get(topic);
      if (subs) {
        subs.delete(ws);
        if (subs.size === 0) topics.delete(topic);
      }
    }
  });
});

server.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
