//! A demo feed for every bundled route (bars, quotes, trades, orderbook,
//! news, and orders and positions of the account [`DEMO_ACCOUNT`]) for
//! whatever symbols are subscribed to (the interest stream says which),
//! from one random walk per symbol, published
//! through [`Host::publish`], the same entry point as
//! `POST /api/v1/publish`. Read it as an example publisher.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use rand::Rng;
use serde_json::json;

use crate::hub::{Host, interest::InterestEvent, publish::Update};

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
    symbol: String,
    name: String,
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

/// The most wanted keys the demo feeds at once.
const MAX_KEYS: usize = 1000;

/// Publish `rate` rounds per second until the host shuts down, each to
/// the keys somebody wants ([`Host::interest`]): subscribing to any symbol
/// starts its feed, and the last subscriber leaving stops it.
pub async fn run(host: Arc<Host>, rate: f64) {
    let period = Duration::from_secs_f64(1.0 / rate.clamp(0.1, 1000.0));
    let mut walks: HashMap<String, Walk> = HashMap::new();
    let mut wanted: BTreeMap<Arc<str>, Arc<str>> = BTreeMap::new();
    let mut interest = host.interest();
    let mut ticker = tokio::time::interval(period);
    let mut shutdown = host.shutdown_signal();
    tracing::info!(rounds_per_second = rate, "demo feed started");
    loop {
        let fresh = tokio::select! {
            _ = ticker.tick() => None,
            event = interest.next() => match event {
                Some(InterestEvent::Snapshot(keys)) => {
                    wanted = keys.into_iter().map(|w| (w.key, w.route)).take(MAX_KEYS).collect();
                    None
                }
                Some(InterestEvent::First { route, key }) if wanted.len() < MAX_KEYS => {
                    wanted.insert(Arc::clone(&key), Arc::clone(&route));
                    // A new subscriber sees its first update now, not a
                    // tick later.
                    Some((key, route))
                }
                Some(InterestEvent::First { .. }) => None,
                Some(InterestEvent::Last { key, .. }) => {
                    wanted.remove(&key);
                    None
                }
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let updates = match fresh {
            Some((key, route)) => round(&mut walks, [(&key, &route)], false),
            None => round(&mut walks, wanted.iter(), true),
        };
        for result in host.publish_all(&updates).await {
            if let Err(e) = result {
                // The routes may not be loaded (yet); say so, quietly.
                tracing::debug!(error = %e, "demo update not published");
            }
        }
    }
}

/// The symbol a key is about: `trades:AAPL`, `news:AAPL:en`, or a
/// canonical request with `symbol`, `symbols` or `fast_symbols`.
fn symbol_of(route: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(route)?.strip_prefix(':')?;
    if rest.starts_with('{') {
        let request: serde_json::Value = serde_json::from_str(rest).ok()?;
        let symbol = request["symbol"]
            .as_str()
            .or_else(|| request["symbols"][0].as_str())
            .or_else(|| request["fast_symbols"][0].as_str())?;
        return Some(symbol.to_owned());
    }
    let symbol = rest.split(':').next()?;
    let plain = !symbol.is_empty()
        && symbol.len() <= 12
        && symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.');
    plain.then(|| symbol.to_owned())
}

fn walk_for<'a>(walks: &'a mut HashMap<String, Walk>, symbol: &str) -> &'a mut Walk {
    walks.entry(symbol.to_owned()).or_insert_with(|| {
        let (price, name) = SYMBOLS
            .iter()
            .find(|(s, _, _)| *s == symbol)
            .map(|&(_, price, name)| (price, name.to_owned()))
            // Any other symbol starts somewhere between 20 and 500.
            .unwrap_or_else(|| {
                let seed = symbol
                    .bytes()
                    .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                (
                    to_tick(20.0 + f64::from(seed % 48_000) / 100.0),
                    symbol.to_owned(),
                )
            });
        Walk {
            symbol: symbol.to_owned(),
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
        }
    })
}

/// One update per wanted key (a headline now and then; an order of the
/// demo account now and then, when its orders or positions are wanted).
/// `step`: move the prices first (a tick; not for a new subscriber's first
/// update).
fn round<'k>(
    walks: &mut HashMap<String, Walk>,
    keys: impl IntoIterator<Item = (&'k Arc<str>, &'k Arc<str>)>,
    step: bool,
) -> Vec<Update> {
    let mut rng = rand::rng();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let minute = now - now % 60_000;
    let mut updates = Vec::new();
    let mut stepped = std::collections::HashSet::new();
    let mut account_wanted = false;
    for (key, route) in keys {
        if matches!(&**route, "orders" | "positions") {
            account_wanted |= key.contains(DEMO_ACCOUNT);
            continue;
        }
        let Some(symbol) = symbol_of(route, key) else {
            continue;
        };
        let w = walk_for(walks, &symbol);
        if step && stepped.insert(symbol) {
            let change = w.last * rng.random_range(-0.001..0.001);
            w.last = to_tick(w.last + change);
            w.high = w.high.max(w.last);
            w.low = w.low.min(w.last);
            w.volume += rng.random_range(1..500);
        }
        let spread = f64::from(rng.random_range(1..5u32)) / TICKS_PER_UNIT;
        let data = match &**route {
            "bars" => json!({
                "time": minute, "open": w.open, "high": w.high, "low": w.low, "close": w.last, "volume": w.volume,
            }),
            "quotes" => {
                let (bid, ask) = (
                    to_tick(w.last - spread / 2.0),
                    to_tick(w.last + spread / 2.0),
                );
                json!({
                    "s": "ok",
                    "n": w.symbol,
                    "v": {
                        "lp": w.last, "ask": ask, "bid": bid, "spread": spread,
                        "open_price": w.open, "high_price": w.high, "low_price": w.low, "prev_close_price": w.prev_close,
                        "ch": to_tick(w.last - w.prev_close), "chp": cents((w.last - w.prev_close) / w.prev_close * 100.0),
                        "volume": w.volume, "short_name": w.symbol, "exchange": "NASDAQ", "description": w.name,
                        "original_name": format!("NASDAQ:{}", w.symbol),
                    },
                })
            }
            "trades" => json!({
                "symbol": w.symbol, "price": w.last, "quantity": f64::from(rng.random_range(1..500u32)), "time": now,
                "side": if rng.random_bool(0.5) { "buy" } else { "sell" },
            }),
            "orderbook" => {
                let mut levels = |side: f64| -> Vec<serde_json::Value> {
                    (0..10u32)
                        .map(|i| {
                            let price =
                                to_tick(w.last + side * (spread / 2.0 + TICK * f64::from(i)));
                            json!({ "price": price, "size": rng.random_range(1..50) * 100 })
                        })
                        .collect()
                };
                json!({ "time": now, "bids": levels(-1.0), "asks": levels(1.0) })
            }
            // News is rarer than prices: about one headline per key every
            // twenty rounds (and one at once for a new subscriber).
            "news" if !step || rng.random_bool(0.05) => {
                let title = HEADLINES[rng.random_range(0..HEADLINES.len())]
                    .replace("{name}", &w.name)
                    .replace("{symbol}", &w.symbol);
                json!({
                    "time": now, "symbol": w.symbol, "title": title,
                    "sentiment": cents(rng.random_range(-1.0..1.0)),
                })
            }
            _ => continue,
        };
        updates.extend(Update::for_key(route, key, data).ok());
    }
    // The demo account trades now and then: a limit order at the last
    // price, working, then filled, and the position it changes.
    if account_wanted && (!step || rng.random_bool(0.2)) {
        let w = walk_for(walks, SYMBOLS[rng.random_range(0..SYMBOLS.len())].0);
        let buy = w.position <= 0.0 || rng.random_bool(0.4);
        let qty = f64::from(rng.random_range(1..10u32) * 10);
        updates.extend(demo_trade(w, now, buy, qty));
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
