//! `loadgen`: drives any server that speaks the ws-router wire protocol and
//! the `POST /api/v1/publish` endpoint, and reports what it measured as one
//! JSON line per run (`--out` appends it to a file); `loadgen table` turns
//! those lines into the tables of BENCHMARKS.md.
//!
//! Scenarios (`loadgen <scenario> --help` for their knobs):
//! * `fanout`: N connections, each subscribed to S of T topics; publish as
//!   fast as the server delivers (a closed loop that keeps a bounded number
//!   of deliveries in flight), then at half that rate for latency.
//! * `storm`: N connections subscribe at the same instant.
//! * `idle`: N subscribed, idle connections; server RSS per connection.
//! * `reload`: copy a plugin into a running host's plugins directory and
//!   time until a subscribe to its route succeeds.

mod conn;
mod procstat;
mod table;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use conn::{Stats, Target, now_ns, subscribe_frame};
use procstat::CpuMeter;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for ws-router and its baselines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Fanout(FanoutArgs),
    Storm(StormArgs),
    Idle(IdleArgs),
    Reload(ReloadArgs),
    /// Print the tables of a results file (JSON lines).
    Table {
        results: PathBuf,
        /// Criterion output directory, for the topic-builder micro-benchmark.
        #[arg(long)]
        criterion: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Name of the server under test, as the table shows it.
    #[arg(long)]
    server: String,
    /// Scenario name, as the table shows it.
    #[arg(long)]
    scenario: String,
    /// WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8000/api/v1/ws")]
    ws: String,
    /// The server's process id, for its CPU time and memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Loopback source addresses to spread connections over (127.0.0.1..=N).
    #[arg(long, default_value_t = 16)]
    sources: u8,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Publish endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8000/api/v1/publish")]
    publish: String,
    /// Connections.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Distinct topics.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Topics each connection subscribes to.
    #[arg(long, default_value_t = 1)]
    subs_per_conn: usize,
    /// Bytes of each update's data.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Seconds of warm-up before each measured phase.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured per phase.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Deliveries kept in flight per connection in the max-throughput phase.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Most updates per publish request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Publish requests in flight at once.
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// Publications per second for the latency phase; default half the
    /// measured maximum.
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Args)]
struct StormArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Distinct requests, cycled over the connections (default: one per
    /// connection). Fewer than `conns` measures subscribes to requests the
    /// host has seen before (a watch list many clients share).
    #[arg(long)]
    distinct: Option<usize>,
    /// Seconds to wait, connected, before the storm and after it (with
    /// "storm: connected" and "storm: done" on stderr), so that a profiler
    /// can sample the storm alone, without the connects and closes.
    #[arg(long, default_value_t = 0.0)]
    settle: f64,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 20_000)]
    conns: usize,
}

#[derive(Args)]
struct ReloadArgs {
    #[command(flatten)]
    common: Common,
    /// The running host's plugins directory.
    #[arg(long)]
    plugins_dir: PathBuf,
    /// The plugin to add.
    #[arg(long)]
    wasm: PathBuf,
    /// The route it serves.
    #[arg(long)]
    route: String,
    /// A valid subscription request for that route.
    #[arg(long, default_value = r#"{"symbols":["AAPL"]}"#)]
    request: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Table { results, criterion } = &cli.command {
        return table::print(results, criterion.as_deref());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    now_ns();
    let (common, record) = runtime.block_on(async {
        match cli.command {
            Command::Fanout(a) => Ok::<_, anyhow::Error>((a.common.clone(), fanout(&a).await?)),
            Command::Storm(a) => Ok((a.common.clone(), storm(&a).await?)),
            Command::Idle(a) => Ok((a.common.clone(), idle(&a).await?)),
            Command::Reload(a) => Ok((a.common.clone(), reload(&a).await?)),
            Command::Table { .. } => unreachable!(),
        }
    })?;
    let mut record = record;
    record.insert("server".into(), json!(common.server));
    record.insert("scenario".into(), json!(common.scenario));
    if let Some(pid) = common.pid {
        record.insert(
            "server_peak_rss_mib".into(),
            json!(procstat::status_bytes(pid, "VmHWM:").map(mib)),
        );
    }
    let line = Value::Object(record).to_string();
    println!("{line}");
    if let Some(out) = &common.out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .with_context(|| format!("cannot open {}", out.display()))?;
        writeln!(f, "{line}")?;
    }
    // Connections close with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1 << 20) as f64 * 10.0).round() / 10.0
}

/// A connection and the topics its subscribe replies named.
type Opened = (conn::Ws, Vec<String>);

/// Open `n` connections, connection `i` subscribing with `frames(i)`;
/// returns the connections and the topics each was told, in order.
async fn open(
    common: &Common,
    n: usize,
    frames: impl Fn(usize) -> Vec<String>,
) -> anyhow::Result<Vec<Opened>> {
    let target = Target::new(&common.ws, common.sources)?;
    let target = &target;
    let frames = &frames;
    let results: Vec<(usize, anyhow::Result<Opened>)> = stream::iter(0..n)
        .map(|i| async move {
            let r = async {
                let mut ws = target.connect(i).await?;
                let topics = conn::subscribe_all(&mut ws, &frames(i)).await?;
                Ok((ws, topics))
            }
            .await;
            (i, r)
        })
        .buffer_unordered(common.connect_concurrency.max(1))
        .collect()
        .await;
    let mut sorted: Vec<Option<Opened>> = (0..n).map(|_| None).collect();
    let mut failures = 0;
    let mut first_error = None;
    for (i, r) in results {
        match r {
            Ok(c) => sorted[i] = Some(c),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        bail!("{failures} of {n} connections failed; first: {e:#}");
    }
    Ok(sorted.into_iter().flatten().collect())
}

/// One task per connection, reading its updates into `stats`.
fn spawn_readers(conns: Vec<Opened>, stats: &Arc<Stats>) -> Vec<JoinHandle<()>> {
    conns
        .into_iter()
        .enumerate()
        .map(|(i, (ws, _))| tokio::spawn(conn::read_updates(ws, i, Arc::clone(stats))))
        .collect()
}

fn bars_request(symbol: &str) -> String {
    format!(r#"{{"symbol":"{symbol}"}}"#)
}

async fn fanout(a: &FanoutArgs) -> anyhow::Result<Map<String, Value>> {
    let (n, t, s) = (a.conns, a.topics.max(1), a.subs_per_conn.max(1));
    if s > t {
        bail!("--subs-per-conn ({s}) cannot exceed --topics ({t})");
    }
    let topic_of = |i: usize, j: usize| (i * s + j) % t;
    let started = Instant::now();
    let conns = open(&a.common, n, |i| {
        (0..s)
            .map(|j| subscribe_frame("bars", &bars_request(&format!("S{:05}", topic_of(i, j)))))
            .collect()
    })
    .await?;
    let subscribe_secs = started.elapsed().as_secs_f64();

    // The publisher addresses topics by the names the server replied with.
    let mut names: Vec<Option<String>> = vec![None; t];
    let mut subs = vec![0u64; t];
    for (i, (_, topics)) in conns.iter().enumerate() {
        for (j, topic) in topics.iter().enumerate() {
            let k = topic_of(i, j);
            subs[k] += 1;
            names[k].get_or_insert_with(|| topic.clone());
        }
    }
    let targets: Vec<(String, u64)> = names
        .into_iter()
        .zip(subs)
        .filter_map(|(name, subs)| Some((serde_json::to_string(&name?).ok()?, subs)))
        .collect();
    let stats = Stats::new();
    let readers = spawn_readers(conns, &stats);

    let mut publisher = Publisher::new(&a.publish, targets, a.size)?;
    let mut record = Map::new();
    record.insert("conns".into(), json!(n));
    record.insert("topics".into(), json!(t));
    record.insert("subs_per_conn".into(), json!(s));
    record.insert("size".into(), json!(a.size));
    record.insert(
        "subscribe_per_s".into(),
        json!(((n * s) as f64 / subscribe_secs).round()),
    );

    let max = run_phase(a, &stats, &mut publisher, None).await?;
    let half_rate = a.rate.unwrap_or(max.pubs_per_s / 2.0);
    max.write("max", &mut record);
    let half = run_phase(a, &stats, &mut publisher, Some(half_rate)).await?;
    half.write("half", &mut record);
    for r in readers {
        r.abort();
    }
    Ok(record)
}

/// Builds publish requests: round-robin over the topics, data padded to the
/// requested size, the send time as the data's last field.
struct Publisher {
    client: reqwest::Client,
    url: String,
    targets: Vec<(String, u64)>,
    next: usize,
    pad: String,
    /// Deliveries owed by everything published so far.
    expected: u64,
    published: u64,
}

const DATA_HEAD: &str =
    r#"{"time":1,"open":1.0,"high":1.0,"low":1.0,"close":1.0,"volume":0,"pad":""#;

impl Publisher {
    fn new(url: &str, targets: Vec<(String, u64)>, size: usize) -> anyhow::Result<Publisher> {
        if targets.is_empty() {
            bail!("no topics to publish to");
        }
        // head + pad + `","ts":` + 13 digits + `}`
        let fixed = DATA_HEAD.len() + 7 + 13 + 1;
        Ok(Publisher {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(4)
                .build()?,
            url: url.to_owned(),
            targets,
            next: 0,
            pad: "x".repeat(size.saturating_sub(fixed)),
            expected: 0,
            published: 0,
        })
    }

    fn avg_subs(&self) -> u64 {
        (self.targets.iter().map(|t| t.1).sum::<u64>() / self.targets.len() as u64).max(1)
    }

    /// The body of a publish request for the next `count` updates.
    fn build(&mut self, count: usize) -> String {
        let mut body = String::with_capacity(count * (self.pad.len() + 200));
        body.push('[');
        let ts = now_ns();
        for k in 0..count {
            let (topic, subs) = &self.targets[self.next];
            self.next = (self.next + 1) % self.targets.len();
            self.expected += subs;
            if k > 0 {
                body.push(',');
            }
            body.push_str(r#"{"route":"bars","topic":"#);
            body.push_str(topic);
            body.push_str(r#","data":"#);
            body.push_str(DATA_HEAD);
            body.push_str(&self.pad);
            body.push_str(r#"","ts":"#);
            body.push_str(&ts.to_string());
            body.push_str("}}");
        }
        body.push(']');
        self.published += count as u64;
        body
    }

    /// Send a body built by [`Publisher::build`].
    fn send(&self, body: String) -> impl Future<Output = anyhow::Result<()>> + use<> {
        let request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        async move {
            let response = request.send().await.context("publish request failed")?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                bail!("publish answered {status}: {text}");
            }
            // Drain the body so the connection is reused.
            let _ = response.bytes().await;
            Ok(())
        }
    }
}

struct Phase {
    delivered_per_s: f64,
    pubs_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    server_cores: Option<f64>,
    loadgen_cores: Option<f64>,
    lost: u64,
    closed: u64,
}

impl Phase {
    fn write(&self, prefix: &str, record: &mut Map<String, Value>) {
        let mut put = |k: &str, v: Value| {
            record.insert(format!("{prefix}_{k}"), v);
        };
        put("delivered_per_s", json!(self.delivered_per_s.round()));
        put("pubs_per_s", json!(self.pubs_per_s.round()));
        put("p50_us", json!(self.p50_us));
        put("p99_us", json!(self.p99_us));
        put("p999_us", json!(self.p999_us));
        put("server_cores", json!(self.server_cores.map(round2)));
        put("loadgen_cores", json!(self.loadgen_cores.map(round2)));
        put("lost", json!(self.lost));
        put("closed", json!(self.closed));
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One measured phase: `rate: None` publishes as fast as deliveries come
/// back (at most `window` deliveries per connection in flight); `Some(r)`
/// publishes `r` updates per second in 10 ms ticks.
async fn run_phase(
    a: &FanoutArgs,
    stats: &Stats,
    publisher: &mut Publisher,
    rate: Option<f64>,
) -> anyhow::Result<Phase> {
    let window = (a.window * a.conns * a.subs_per_conn.max(1)) as u64;
    let base_delivered = stats.delivered();
    let base_expected = publisher.expected;
    let avg = publisher.avg_subs();
    let warmup_end = Instant::now() + Duration::from_secs_f64(a.warmup);
    let end = warmup_end + Duration::from_secs_f64(a.duration);
    let mut measuring = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0;
    let mut inflight = futures_util::stream::FuturesUnordered::new();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if measuring.is_none() && now >= warmup_end {
            stats.reset_latency();
            measuring = Some((
                now,
                stats.delivered(),
                publisher.published,
                CpuMeter::start(a.common.pid),
                CpuMeter::start(None),
            ));
        }
        // Several requests in flight, so that the publisher's round trips
        // are not what limits the server.
        while inflight.len() >= a.inflight.max(1) {
            if let Some(r) = inflight.next().await {
                r?;
            }
        }
        match rate {
            None => {
                let delivered = stats.delivered() - base_delivered;
                let outstanding = (publisher.expected - base_expected).saturating_sub(delivered);
                let room = window.saturating_sub(outstanding);
                if room < avg || room < window / 4 {
                    tokio::select! {
                        Some(r) = inflight.next() => r?,
                        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                    continue;
                }
                let count = ((room / avg) as usize).clamp(1, a.batch);
                let body = publisher.build(count);
                inflight.push(publisher.send(body));
            }
            Some(rate) => {
                tokio::select! {
                    Some(r) = inflight.next() => { r?; continue; }
                    _ = tick.tick() => {}
                }
                owed += rate / 100.0;
                let count = owed.floor() as usize;
                if count > 0 {
                    owed -= count as f64;
                    for chunk in chunks(count, a.batch) {
                        let body = publisher.build(chunk);
                        inflight.push(publisher.send(body));
                    }
                }
            }
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    let Some((t0, d0, p0, server_cpu, self_cpu)) = measuring else {
        bail!("the phase ended before its warm-up did");
    };
    let secs = t0.elapsed().as_secs_f64();
    let delivered = stats.delivered() - d0;
    let published = publisher.published - p0;
    let server_cores = server_cpu.elapsed().map(|c| c / secs);
    let loadgen_cores = self_cpu.elapsed().map(|c| c / secs);
    let latency = stats.latency();
    // Let in-flight deliveries arrive before counting losses.
    let drain_end = Instant::now() + Duration::from_secs(3);
    let owed_total = publisher.expected - base_expected;
    while stats.delivered() - base_delivered < owed_total && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Phase {
        delivered_per_s: delivered as f64 / secs,
        pubs_per_s: published as f64 / secs,
        p50_us: latency.value_at_quantile(0.5),
        p99_us: latency.value_at_quantile(0.99),
        p999_us: latency.value_at_quantile(0.999),
        server_cores,
        loadgen_cores,
        lost: owed_total.saturating_sub(stats.delivered() - base_delivered),
        closed: stats.closed.load(std::sync::atomic::Ordering::Relaxed),
    })
}

fn chunks(total: usize, max: usize) -> impl Iterator<Item = usize> {
    let max = max.max(1);
    (0..total.div_ceil(max)).map(move |i| (total - i * max).min(max))
}

async fn storm(a: &StormArgs) -> anyhow::Result<Map<String, Value>> {
    let n = a.conns;
    let distinct = a.distinct.unwrap_or(n).max(1);
    let started = Instant::now();
    let conns = open(&a.common, n, |_| Vec::new()).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    settle(a.settle, "connected").await;
    let gate = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for (i, (mut ws, _)) in conns.into_iter().enumerate() {
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let frame =
                subscribe_frame("bars", &bars_request(&format!("STORM{:05}", i % distinct)));
            gate.wait().await;
            let t0 = Instant::now();
            conn::subscribe_all(&mut ws, &[frame]).await?;
            Ok::<_, anyhow::Error>((t0, Instant::now(), ws))
        }));
    }
    let server_cpu = CpuMeter::start(a.common.pid);
    let self_cpu = CpuMeter::start(None);
    gate.wait().await;
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut keep = Vec::with_capacity(n);
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for task in tasks {
        let (sent, done, ws) = task.await??;
        // Each reply's time from its own send: the tasks, not this one,
        // start the clock.
        hist.saturating_record(done.duration_since(sent).as_micros() as u64);
        first = Some(first.map_or(sent, |f| f.min(sent)));
        last = Some(last.map_or(done, |l| l.max(done)));
        keep.push(ws);
    }
    let secs = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64().max(1e-6),
        _ => bail!("no connections"),
    };
    let mut record = Map::new();
    record.insert("conns".into(), json!(n));
    record.insert("distinct".into(), json!(distinct));
    record.insert(
        "connect_per_s".into(),
        json!((n as f64 / connect_secs).round()),
    );
    record.insert("subscribe_per_s".into(), json!((n as f64 / secs).round()));
    record.insert("storm_ms".into(), json!((secs * 1000.0).round()));
    record.insert(
        "reply_p50_ms".into(),
        json!(round2(hist.value_at_quantile(0.5) as f64 / 1000.0)),
    );
    record.insert(
        "reply_p99_ms".into(),
        json!(round2(hist.value_at_quantile(0.99) as f64 / 1000.0)),
    );
    record.insert(
        "server_cpu_s".into(),
        json!(server_cpu.elapsed().map(round2)),
    );
    record.insert(
        "loadgen_cpu_s".into(),
        json!(self_cpu.elapsed().map(round2)),
    );
    settle(a.settle, "done").await;
    drop(keep);
    Ok(record)
}

/// Say where the storm is, then wait `secs` (nothing without `--settle`).
async fn settle(secs: f64, stage: &str) {
    if secs > 0.0 {
        eprintln!("storm: {stage}");
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }
}

async fn idle(a: &IdleArgs) -> anyhow::Result<Map<String, Value>> {
    let pid = a.common.pid.context("idle needs --pid")?;
    let rss0 = procstat::status_bytes(pid, "VmRSS:").context("cannot read the server's RSS")?;
    let n = a.conns;
    let conns = open(&a.common, n, |i| {
        vec![subscribe_frame(
            "bars",
            &bars_request(&format!("IDLE{:03}", i % 100)),
        )]
    })
    .await?;
    let stats = Stats::new();
    let readers = spawn_readers(conns, &stats);
    // Let the server settle (buffers released after the handshake).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = procstat::status_bytes(pid, "VmRSS:").context("cannot read the server's RSS")?;
    let mut record = Map::new();
    record.insert("conns".into(), json!(n));
    record.insert("rss_before_mib".into(), json!(mib(rss0)));
    record.insert("rss_after_mib".into(), json!(mib(rss1)));
    record.insert(
        "rss_per_conn_kib".into(),
        json!(round2(rss1.saturating_sub(rss0) as f64 / n as f64 / 1024.0)),
    );
    record.insert(
        "closed".into(),
        json!(stats.closed.load(std::sync::atomic::Ordering::Relaxed)),
    );
    for r in readers {
        r.abort();
    }
    Ok(record)
}

async fn reload(a: &ReloadArgs) -> anyhow::Result<Map<String, Value>> {
    let target = Target::new(&a.common.ws, 1)?;
    let mut ws = target.connect(0).await?;
    let frame = subscribe_frame(&a.route, &a.request);
    let try_subscribe = async |ws: &mut conn::Ws| -> anyhow::Result<bool> {
        ws.send(Message::text(frame.as_str())).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains(".subscribe.response") => {
                    return Ok(conn::reply_topic(&t).is_ok());
                }
                Some(Ok(Message::Close(_))) | None => bail!("connection closed"),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(_)) => {}
            }
        }
    };
    if try_subscribe(&mut ws).await? {
        bail!("route {:?} is already served before the copy", a.route);
    }
    let name = a.wasm.file_name().context("--wasm has no file name")?;
    let tmp = a
        .plugins_dir
        .join(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::copy(&a.wasm, &tmp).with_context(|| format!("cannot copy {}", a.wasm.display()))?;
    // Deploy the way an operator should: write aside, then rename into place.
    let t0 = Instant::now();
    std::fs::rename(&tmp, a.plugins_dir.join(name))?;
    let deadline = t0 + Duration::from_secs_f64(a.timeout);
    let mut took = None;
    while Instant::now() < deadline {
        if try_subscribe(&mut ws).await? {
            took = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut record = Map::new();
    record.insert("available".into(), json!(took.is_some()));
    record.insert(
        "reload_ms".into(),
        json!(took.map(|d| round2(d.as_secs_f64() * 1000.0))),
    );
    record.insert("timeout_s".into(), json!(a.timeout));
    Ok(record)
}
