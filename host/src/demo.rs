//! A demo feed for every bundled route (bars, quotes, trades, orderbook,
//! news, and orders and positions of the account [`DEMO_ACCOUNT`]) for a
//! few symbols, from one random walk per symbol, published
//! through [`Host::publish`], the same entry point as
//! `POST /api/v1/publish`. Read it as an example publisher.

use std::{sync::Arc, time::Duration};

use rand::Rng;
use serde_json::json;

use crate::hub::{Host, publish::Update};

const SYMBOLS: [(&str, f64, &str); 3] = [
    ("AAPL", 190.0, "Apple Inc."),
    ("GOOGL", 140.0, "Alphabet Inc."),
    ("MSFT", 410.0, "Microsoft Corporation"),
];

/// The instruments' tick is 1/100: prices are whole cents.
const TICKS_PER_UNIT: f64 = 100.0;
const TICK: f64 = 1.0 / TICKS_PER_UNIT;

/// `price` on the tick grid. Dividing a whole number of ticks gives the
/// double nearest the decimal price, which prints as written (190.7, never
/// 190.70499999999998 or 190.70000000000002).
fn to_tick(price: f64) -> f64 {
    (price * TICKS_PER_UNIT).round() / TICKS_PER_UNIT
}

/// Two decimals, for percentages.
fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

const HEADLINES: [&str; 4] = [
    "{name} shares move on heavy volume",
    "Analysts revisit {name} price targets",
    "{name} announces product update",
    "Options activity picks up in {symbol}",
];

/// The account whose orders and positions the demo trades.
pub const DEMO_ACCOUNT: &str = "DEMO";

struct Walk {
    symbol: &'static str,
    name: &'static str,
    prev_close: f64,
    open: f64,
    high: f64,
    low: f64,
    last: f64,
    volume: i64,
    /// The demo account's position: signed quantity (short below 0) and
    /// average entry price.
    position: f64,
    entry: f64,
    /// Orders placed so far, for their ids.
    orders: u64,
}

/// Publish `rate` rounds per second until the host shuts down.
pub async fn run(host: Arc<Host>, rate: f64) {
    let period = Duration::from_secs_f64(1.0 / rate.clamp(0.1, 1000.0));
    let mut walks: Vec<Walk> = SYMBOLS
        .iter()
        .map(|&(symbol, price, name)| Walk {
            symbol,
            name,
            prev_close: price,
            open: price,
            high: price,
            low: price,
            last: price,
            volume: 0,
            position: 0.0,
            entry: 0.0,
            orders: 0,
        })
        .collect();
    let mut ticker = tokio::time::interval(period);
    let mut shutdown = host.shutdown_signal();
    tracing::info!(rounds_per_second = rate, "demo feed started");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let updates = round(&mut walks);
        for result in host.publish_all(&updates).await {
            if let Err(e) = result {
                // The routes may not be loaded (yet); say so, quietly.
                tracing::debug!(error = %e, "demo update not published");
            }
        }
    }
}

/// One update per route and symbol (and a headline now and then).
fn round(walks: &mut [Walk]) -> Vec<Update> {
    let mut rng = rand::rng();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let minute = now - now % 60_000;
    let mut updates = Vec::with_capacity(walks.len() * 5);
    for w in walks.iter_mut() {
        let step = w.last * rng.random_range(-0.001..0.001);
        w.last = to_tick(w.last + step);
        w.high = w.high.max(w.last);
        w.low = w.low.min(w.last);
        let quantity = rng.random_range(1..500);
        w.volume += quantity;
        let spread = f64::from(rng.random_range(1..5u32)) / TICKS_PER_UNIT;
        let (bid, ask) = (
            to_tick(w.last - spread / 2.0),
            to_tick(w.last + spread / 2.0),
        );
        let bar = json!({
            "time": minute, "open": w.open, "high": w.high, "low": w.low, "close": w.last, "volume": w.volume,
        });
        let quote = json!({
            "s": "ok",
            "n": w.symbol,
            "v": {
                "lp": w.last, "ask": ask, "bid": bid, "spread": spread,
                "open_price": w.open, "high_price": w.high, "low_price": w.low, "prev_close_price": w.prev_close,
                "ch": to_tick(w.last - w.prev_close), "chp": cents((w.last - w.prev_close) / w.prev_close * 100.0),
                "volume": w.volume, "short_name": w.symbol, "exchange": "NASDAQ", "description": w.name,
                "original_name": format!("NASDAQ:{}", w.symbol),
            },
        });
        let trade = json!({
            "symbol": w.symbol, "price": w.last, "quantity": quantity as f64, "time": now,
            "side": if rng.random_bool(0.5) { "buy" } else { "sell" },
        });
        let mut levels = |side: f64| -> Vec<serde_json::Value> {
            (0..10u32)
                .map(|i| {
                    let price = to_tick(w.last + side * (spread / 2.0 + TICK * f64::from(i)));
                    json!({ "price": price, "size": rng.random_range(1..50) * 100 })
                })
                .collect()
        };
        let book = json!({ "time": now, "bids": levels(-1.0), "asks": levels(1.0) });
        let updates_for_symbol = [
            Update::for_request("bars", json!({"symbol": w.symbol, "resolution": "1"}), bar),
            Update::for_request("quotes", json!({"symbols": [w.symbol]}), quote),
            Update::for_key("trades", &format!("trades:{}", w.symbol), trade),
            Update::for_request("orderbook", json!({"symbol": w.symbol}), book),
        ];
        updates.extend(updates_for_symbol.into_iter().filter_map(Result::ok));
        // The demo account trades now and then: a limit order at the last
        // price, working, then filled, and the position it changes.
        if rng.random_bool(0.05) {
            let buy = w.position <= 0.0 || rng.random_bool(0.4);
            let qty = f64::from(rng.random_range(1..10u32) * 10);
            updates.extend(demo_trade(w, now, buy, qty));
        }
        // News is rarer than prices: about one headline per symbol every
        // twenty rounds.
        if rng.random_bool(0.05) {
            let title = HEADLINES[rng.random_range(0..HEADLINES.len())]
                .replace("{name}", w.name)
                .replace("{symbol}", w.symbol);
            let headline = json!({
                "time": now, "symbol": w.symbol, "title": title,
                "sentiment": cents(rng.random_range(-1.0..1.0)),
            });
            let request = json!({"symbols": [w.symbol], "language": "en"});
            updates.extend(Update::for_request("news", request, headline).ok());
        }
    }
    updates
}

/// One order of the demo account, working then filled, and the position
/// after the fill.
fn demo_trade(w: &mut Walk, now: i64, buy: bool, qty: f64) -> Vec<Update> {
    w.orders += 1;
    let id = format!("{}-{}", w.symbol, w.orders);
    let side = if buy { 1 } else { -1 };
    let order = |status: u8, filled: f64| {
        json!({
            "id": id, "symbol": w.symbol, "type": 1, "side": side, "qty": qty,
            // 6 working, 2 filled.
            "status": status, "limitPrice": w.last, "filledQty": filled,
            "avgPrice": w.last, "updateTime": now,
        })
    };
    let (working, filled) = (order(6, 0.0), order(2, qty));
    let signed = if buy { qty } else { -qty };
    let after = w.position + signed;
    w.entry = if after == 0.0 {
        0.0
    } else if w.position == 0.0 || (w.position > 0.0) != (after > 0.0) {
        // Opened, or flipped to the other side: entered at this price.
        w.last
    } else if after.abs() > w.position.abs() {
        to_tick((w.entry * w.position.abs() + w.last * qty) / after.abs())
    } else {
        w.entry
    };
    w.position = after;
    let position = json!({
        "id": w.symbol, "symbol": w.symbol, "qty": after.abs(),
        "side": if after < 0.0 { -1 } else { 1 }, "avgPrice": w.entry,
    });
    let account = json!({ "accountId": DEMO_ACCOUNT });
    [
        Update::for_request("orders", &account, working),
        Update::for_request("orders", &account, filled),
        Update::for_request("positions", &account, position),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .collect()
}
