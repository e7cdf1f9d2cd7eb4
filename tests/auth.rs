//! Who may subscribe and who may publish (issue 13), against the real host:
//! client tokens (JWT) on the upgrade, the `routes` claim, the plugins'
//! `authorize`, expiry and `auth.refresh`, publish keys (and trusted ones),
//! content types, browser origins, and the refusal to serve an open
//! publish API on the network.
//!
//! `tests/fixtures/jwt-test-es256.{key,pub}` is a P-256 key pair made for
//! these tests only (`openssl ecparam -genkey -name prime256v1 | openssl
//! pkcs8 -topk8 -nocrypt`); it protects nothing.

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Client, Event, HOST_BIN, Host, root};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

const SECRET: &str = "test-secret-for-auth-rs";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token signed with `secret`: `claims`, expiring in `ttl_secs`
/// (in the past when negative) unless `claims` says otherwise.
fn token_with(secret: &str, mut claims: Value, ttl_secs: i64) -> String {
    if claims.get("exp").is_none() {
        claims["exp"] = json!(now().saturating_add_signed(ttl_secs));
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token")
}

fn token(claims: Value) -> String {
    token_with(SECRET, claims, 300)
}

/// A host requiring tokens signed with [`SECRET`]; connections are logged.
fn jwt_host(plugins: &[&str]) -> Host {
    Host::builder()
        .plugins(plugins)
        .arg("--jwt-secret")
        .arg(SECRET)
        .arg("--log-filter")
        .arg("info,ws_router_host::http=debug")
        .start()
}

/// The WebSocket handshake with `headers` (and `query`), as a client or as
/// the refusal's status and JSON body.
async fn connect(
    host: &Host,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<Client, (u16, Value)> {
    let mut request = format!("{}{query}", host.ws_url())
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    match Client::try_connect(request).await {
        Ok(client) => Ok(client),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("handshake failed otherwise: {e}"),
    }
}

async fn refused(host: &Host, query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match connect(host, query, headers).await {
        Ok(_) => panic!("connected; expected a refusal"),
        Err((status, body)) => {
            assert_eq!(body["status"], "error", "{body}");
            (
                status,
                body["message"].as_str().unwrap_or_default().to_owned(),
            )
        }
    }
}

async fn send_subscribe(c: &mut Client, route: &str, request: Value) -> Value {
    c.send(&json!({"type": format!("{route}.subscribe"), "payload": request}))
        .await;
    let reply = c.recv().await;
    assert_eq!(
        reply["type"],
        format!("{route}.subscribe.response"),
        "{reply}"
    );
    reply["payload"].clone()
}

#[tokio::test]
async fn an_upgrade_without_a_valid_token_gets_401_and_no_connection() {
    let host = jwt_host(&["bars"]);
    let (status, message) = refused(&host, "", &[]).await;
    assert_eq!(status, 401);
    assert!(message.contains("missing token"), "{message}");

    let forged = token_with("another-secret", json!({"sub": "u1"}), 300);
    let (status, message) =
        refused(&host, "", &[("authorization", &format!("Bearer {forged}"))]).await;
    assert_eq!(status, 401);
    assert!(message.contains("bad signature"), "{message}");

    let expired = token_with(SECRET, json!({"sub": "u1"}), -30);
    let (status, message) =
        refused(&host, "", &[("cookie", &format!("access_token={expired}"))]).await;
    assert_eq!(status, 401);
    assert!(message.contains("token expired"), "{message}");

    let (status, message) = refused(&host, "?token=not.a.jwt", &[]).await;
    assert_eq!(status, 401);
    assert!(message.contains("invalid token"), "{message}");

    // Nothing was accepted: no session was ever opened.
    let metrics = reqwest::get(host.http("/api/v1/routes")).await.unwrap();
    assert!(metrics.status().is_success());
    assert!(
        !host.logs().iter().any(|l| l.contains("connected")),
        "{:?}",
        host.logs()
    );
}

#[tokio::test]
async fn a_token_in_the_cookie_the_header_or_the_query_connects() {
    let host = jwt_host(&["bars"]);
    let t = token(json!({"sub": "u1"}));
    let ways: [(String, Vec<(&str, String)>); 3] = [
        (
            String::new(),
            vec![("cookie", format!("theme=dark; access_token={t}"))],
        ),
        (
            String::new(),
            vec![("authorization", format!("Bearer {t}"))],
        ),
        (format!("?token={t}"), vec![]),
    ];
    for (query, headers) in ways {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut c = connect(&host, &query, &headers)
            .await
            .unwrap_or_else(|e| panic!("{query} {headers:?}: {e:?}"));
        c.subscribe("bars", json!({"symbol": "AAPL", "resolution": "1"}))
            .await;
        c.close().await;
    }
    // The subject is on the connection's log lines.
    host.wait_for_log(r#"sub="u1""#, Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn the_routes_claim_limits_the_routes_and_the_connection_stays() {
    let host = Host::builder().arg("--jwt-secret").arg(SECRET).start();
    let t = token(json!({"sub": "u1", "routes": ["bars"]}));
    let mut c = connect(&host, &format!("?token={t}"), &[]).await.unwrap();
    c.subscribe("bars", json!({"symbol": "AAPL", "resolution": "1"}))
        .await;
    let reply = send_subscribe(&mut c, "trades", json!({"symbol": "AAPL"})).await;
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(
        reply["message"], "route \"trades\" is not among this token's routes",
        "{reply}"
    );
    // Still connected, still subscribed to bars.
    let key = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;
    let body = json!({"route": "bars", "key": key,
        "data": {"time": 1, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1}});
    host.publish(&body).await;
    assert_eq!(c.recv().await["type"], "bars.update");
}

#[tokio::test]
async fn the_plugin_authorizes_accounts_by_the_claims() {
    let host = jwt_host(&["orders", "positions"]);
    let t = token(json!({"sub": "u1", "accounts": ["A1"]}));
    let mut c = connect(&host, "", &[("authorization", &format!("Bearer {t}"))])
        .await
        .unwrap();
    c.subscribe("orders", json!({"accountId": "A1"})).await;
    let reply = send_subscribe(&mut c, "orders", json!({"accountId": "A2"})).await;
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(
        reply["message"], "account \"A2\" is not among this token's accounts",
        "{reply}"
    );
    let reply = send_subscribe(&mut c, "positions", json!({"accountId": "A2"})).await;
    assert_eq!(reply["status"], "error", "{reply}");
    // A re-subscribe is authorized again, and still allowed.
    c.subscribe("orders", json!({"accountId": "A1"})).await;

    // Without authentication the plugin sees `null` claims and allows.
    let open = Host::builder().plugins(&["orders"]).start();
    let mut c = open.client().await;
    c.subscribe("orders", json!({"accountId": "A2"})).await;
}

#[tokio::test]
async fn an_expiring_token_closes_with_4001_unless_refreshed_in_time() {
    let host = jwt_host(&["bars"]);
    let short = |sub: &str| token_with(SECRET, json!({"sub": sub}), 2);

    let mut lapsing = connect(&host, &format!("?token={}", short("u1")), &[])
        .await
        .unwrap();
    // A refresh with a bad token is refused; the old expiry stands.
    let forged = token_with("another-secret", json!({"sub": "u1"}), 600);
    lapsing
        .send(&json!({"type": "auth.refresh", "id": "r1", "payload": {"token": forged}}))
        .await;
    let reply = lapsing.recv().await;
    assert_eq!(reply["type"], "auth.refresh.response", "{reply}");
    assert_eq!(reply["id"], "r1", "{reply}");
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("bad signature"),
        "{reply}"
    );

    let mut refreshed = connect(&host, &format!("?token={}", short("u2")), &[])
        .await
        .unwrap();
    let fresh = token_with(SECRET, json!({"sub": "u2"}), 600);
    refreshed
        .send(&json!({"type": "auth.refresh", "id": 7, "payload": {"token": fresh}}))
        .await;
    assert_eq!(
        refreshed.recv().await,
        json!({"type": "auth.refresh.response", "id": 7, "payload": {"status": "ok"}})
    );

    match lapsing.next_event(Duration::from_secs(5)).await {
        Some(Event::Closed(Some((code, reason)))) => {
            assert_eq!(code, 4001);
            assert_eq!(reason, "token expired");
        }
        other => panic!("expected a 4001 close, got {other:?}"),
    }
    // Well past the first token's expiry, the refreshed one still serves.
    refreshed
        .subscribe("bars", json!({"symbol": "AAPL", "resolution": "1"}))
        .await;
    refreshed.expect_silence(Duration::from_millis(300)).await;
}

async fn post(
    host: &Host,
    path: &str,
    key: Option<&str>,
    content_type: &str,
    body: &Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(host.http(path))
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("POST")
}

async fn get(host: &Host, path: &str, key: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(host.http(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("GET").status().as_u16()
}

fn trade(price: f64) -> Value {
    json!({"route": "trades", "key": "trades:AAPL",
        "data": {"symbol": "AAPL", "price": price, "quantity": 1.0, "time": 1, "side": "buy"}})
}

#[tokio::test]
async fn with_a_publish_key_only_its_holder_publishes_and_reads_the_views() {
    let host = Host::builder()
        .plugins(&["trades"])
        .arg("--publish-key")
        .arg("k1")
        .arg("--publish-key")
        .arg("k2")
        .start();
    let mut c = host.client().await;
    c.subscribe("trades", json!({"symbols": ["AAPL"]})).await;
    for key in [None, Some("wrong"), Some("k1x"), Some("")] {
        let reply = post(
            &host,
            "/api/v1/publish",
            key,
            "application/json",
            &trade(1.0),
        )
        .await;
        assert_eq!(reply.status(), 401, "{key:?}");
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["status"], "error");
    }
    c.expect_silence(Duration::from_millis(300)).await;
    for key in ["k1", "k2"] {
        let reply = post(
            &host,
            "/api/v1/publish",
            Some(key),
            "application/json",
            &trade(2.0),
        )
        .await;
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["delivered"], 1, "{body}");
        assert_eq!(c.recv().await["payload"]["payload"]["price"], 2.0);
    }
    for path in ["/api/v1/subscribers?key=trades:AAPL", "/api/v1/plugins"] {
        assert_eq!(get(&host, path, None).await, 401, "{path}");
        assert_eq!(get(&host, path, Some("nope")).await, 401, "{path}");
        assert_eq!(get(&host, path, Some("k2")).await, 200, "{path}");
    }
    // The routes and the documents stay public.
    assert_eq!(get(&host, "/api/v1/routes", None).await, 200);
}

#[tokio::test]
async fn a_publish_not_declared_json_is_415() {
    let host = Host::builder().plugins(&["trades"]).start();
    let mut c = host.client().await;
    c.subscribe("trades", json!({"symbols": ["AAPL"]})).await;
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
    ] {
        let reply = post(&host, "/api/v1/publish", None, content_type, &trade(1.0)).await;
        assert_eq!(reply.status(), 415, "{content_type}");
    }
    // No content type at all (a Blob body) is not JSON either.
    let reply = reqwest::Client::new()
        .post(host.http("/api/v1/publish"))
        .body(trade(1.0).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 415);
    c.expect_silence(Duration::from_millis(300)).await;
    let reply = post(
        &host,
        "/api/v1/publish",
        None,
        "application/json; charset=utf-8",
        &trade(3.0),
    )
    .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(c.recv().await["payload"]["payload"]["price"], 3.0);
}

/// An update whose data breaks the trades schema (price must be a number).
fn bad_trade() -> Value {
    json!({"route": "trades", "key": "trades:AAPL",
        "data": {"symbol": "AAPL", "price": "cheap", "quantity": 1.0, "time": 1, "side": "buy"}})
}

async fn publish_status(host: &Host, key: &str, body: &Value) -> String {
    let reply = post(host, "/api/v1/publish", Some(key), "application/json", body).await;
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    body["results"][0]["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_trusted_publisher_is_checked_on_a_sample_and_others_always() {
    let sampled = |n: &str| {
        Host::builder()
            .plugins(&["trades"])
            .arg("--trusted-publish-key")
            .arg("trusted")
            .arg("--publish-key")
            .arg("plain")
            .arg("--trusted-validation-sample")
            .arg(n)
            .start()
    };
    // One in a thousand: the trusted key's bad update goes through; the
    // ordinary key's never does.
    let host = sampled("1000");
    for _ in 0..3 {
        assert_eq!(publish_status(&host, "trusted", &bad_trade()).await, "ok");
        assert_eq!(publish_status(&host, "plain", &bad_trade()).await, "error");
    }
    // One in one: every update is checked, the trusted key's too, and the
    // failure is logged.
    let host = sampled("1");
    for _ in 0..3 {
        assert_eq!(
            publish_status(&host, "trusted", &bad_trade()).await,
            "error"
        );
        assert_eq!(publish_status(&host, "trusted", &trade(1.0)).await, "ok");
    }
    host.wait_for_log("sampled check", Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn a_foreign_origin_gets_403_and_an_allowed_one_connects() {
    let host = Host::builder()
        .plugins(&["bars"])
        .arg("--allowed-origins")
        .arg("https://app.example.com,https://other.example.com")
        .start();
    let (status, message) = refused(&host, "", &[("origin", "https://evil.example.com")]).await;
    assert_eq!(status, 403);
    assert!(message.contains("evil.example.com"), "{message}");
    let own = format!("http://{}", host.addr);
    for origin in [
        own.as_str(),
        "https://app.example.com",
        "https://Other.example.com/",
    ] {
        let mut c = connect(&host, "", &[("origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e:?}"));
        c.subscribe("bars", json!({"symbol": "AAPL", "resolution": "1"}))
            .await;
    }

    let any = Host::builder()
        .plugins(&["bars"])
        .arg("--allowed-origins")
        .arg("*")
        .start();
    assert!(
        connect(&any, "", &[("origin", "https://evil.example.com")])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_plugin_without_authorize_still_loads_and_serves() {
    let host = jwt_host(&["contract-v0-1-9"]);
    let t = token(json!({"sub": "u1", "accounts": []}));
    let mut c = connect(&host, &format!("?token={t}"), &[]).await.unwrap();
    let reply = c
        .subscribe("contract-v0-1-9", json!({"symbol": "AAPL"}))
        .await;
    let topic = reply["topic"].as_str().unwrap().to_owned();
    host.publish(&json!({"route": "contract-v0-1-9", "key": topic, "data": {"n": 1}}))
        .await;
    assert_eq!(c.recv().await["type"], "contract-v0-1-9.update");
}

/// `authorize` is a pure function of the claims and the request (the
/// contract says so): the host reuses an answer for the same question for
/// `--authorize-memory-ms`, then asks again; 0 asks every time. The
/// misbehave route answers `clock` with the time it was asked.
#[tokio::test]
async fn an_authorize_answer_is_reused_for_a_moment_then_asked_again() {
    async fn refusal(c: &mut Client) -> String {
        let reply = send_subscribe(c, "misbehave", json!({"mode": "clock"})).await;
        assert_eq!(reply["status"], "error", "{reply}");
        let message = reply["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.starts_with("asked at "), "{reply}");
        message
    }
    let host = Host::builder()
        .plugins(&["misbehave"])
        .arg("--authorize-memory-ms")
        .arg("300")
        .start();
    let (mut a, mut b) = (host.client().await, host.client().await);
    let first = refusal(&mut a).await;
    // The same question from another connection: the same answer, unasked.
    assert_eq!(refusal(&mut b).await, first);
    assert_eq!(refusal(&mut a).await, first);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_ne!(refusal(&mut a).await, first, "asked again once it expired");

    let host = Host::builder()
        .plugins(&["misbehave"])
        .arg("--authorize-memory-ms")
        .arg("0")
        .start();
    let mut c = host.client().await;
    let first = refusal(&mut c).await;
    assert_ne!(refusal(&mut c).await, first, "0 asks every time");
}

#[tokio::test]
async fn an_es256_public_key_verifies_tokens() {
    let fixtures = root().join("tests/fixtures");
    let host = Host::builder()
        .plugins(&["bars"])
        .arg("--jwt-public-key")
        .arg(fixtures.join("jwt-test-es256.pub").to_str().unwrap())
        .arg("--jwt-issuer")
        .arg("https://auth.example.com")
        .start();
    let private = std::fs::read(fixtures.join("jwt-test-es256.key")).unwrap();
    let key = EncodingKey::from_ec_pem(&private).unwrap();
    let es256 = |claims: Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
    };
    let exp = now() + 300;
    let good = es256(json!({"sub": "u1", "exp": exp, "iss": "https://auth.example.com"}));
    let mut c = connect(&host, &format!("?token={good}"), &[])
        .await
        .unwrap();
    c.subscribe("bars", json!({"symbol": "AAPL", "resolution": "1"}))
        .await;

    let stranger = es256(json!({"sub": "u1", "exp": exp, "iss": "https://evil.example.com"}));
    let (status, message) = refused(&host, &format!("?token={stranger}"), &[]).await;
    assert_eq!(
        (status, message.as_str()),
        (401, "invalid token: wrong issuer (iss)")
    );
    // An HS256 token is not accepted where only a public key is configured.
    let hs = token(json!({"sub": "u1", "iss": "https://auth.example.com"}));
    let (status, message) = refused(&host, &format!("?token={hs}"), &[]).await;
    assert_eq!(status, 401);
    assert!(message.contains("not accepted"), "{message}");
}

/// Run the host on `listen` with `args`: `Ok` once it serves (then it is
/// stopped), `Err` with its exit code and output when it exits instead.
fn run_host(listen: &str, args: &[&str]) -> Result<(), (Option<i32>, String)> {
    use std::io::{BufRead, BufReader, Read};
    let plugins = tempfile::tempdir().unwrap();
    let mut child = Command::new(HOST_BIN)
        .args(["--listen", listen, "--plugins"])
        .arg(plugins.path())
        .args(args)
        .env_remove("WS_ROUTER_PUBLISH_KEYS")
        .env_remove("WS_ROUTER_TRUSTED_PUBLISH_KEYS")
        .env_remove("WS_ROUTER_INSECURE_PUBLISH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut output = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("listening on") => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(());
            }
            Ok(line) => output.push_str(&(line + "\n")),
            // Both streams closed: the process ended.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let code = child.wait().unwrap().code();
                return Err((code, output));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the host neither served nor exited within a minute:\n{output}");
            }
        }
    }
}

#[test]
fn the_host_refuses_an_open_publish_api_on_the_network() {
    let (code, output) = run_host("0.0.0.0:0", &[]).expect_err("the host should refuse to start");
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("without a publish key"), "{output}");
    assert!(output.contains("--insecure-publish"), "{output}");
    // Either way out starts it; loopback needs neither.
    run_host("0.0.0.0:0", &["--insecure-publish"]).unwrap();
    run_host("0.0.0.0:0", &["--publish-key", "k"]).unwrap();
    run_host("127.0.0.1:0", &[]).unwrap();
}

/// The demo feed trades the account `DEMO`: its orders and positions pass
/// their routes' schemas (every publish is checked) and reach a client
/// (authentication off: the plugins allow everyone).
#[tokio::test]
async fn the_demo_feed_trades_the_demo_account() {
    let host = Host::builder()
        .plugins(&["orders", "positions"])
        .arg("--demo-feed")
        .arg("--demo-rate")
        .arg("50")
        .start();
    let mut c = host.client().await;
    for route in ["orders", "positions"] {
        c.send(&json!({"type": format!("{route}.subscribe"), "payload": {"accountId": "DEMO"}}))
            .await;
    }
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while seen.len() < 2 && start.elapsed() < Duration::from_secs(10) {
        match c.next_event(Duration::from_secs(1)).await {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let ty = v["type"].as_str().unwrap_or_default().to_owned();
                if ty.ends_with(".subscribe.response") {
                    assert_eq!(v["payload"]["status"], "ok", "{v}");
                } else if let Some(route) = ty.strip_suffix(".update") {
                    seen.insert(route.to_owned());
                }
            }
            Some(other) => panic!("connection ended: {other:?}"),
            None => {}
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["orders", "positions"]
    );
}
