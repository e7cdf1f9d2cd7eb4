//! A route that misbehaves on request. `{"mode": "<mode>"}` picks what its
//! `topics` call does; `"ok"` behaves. The sandbox tests check that each
//! misbehaviour is contained: one error reply, no harm to anyone else.

use ws_router_sdk::prelude::*;

#[model]
pub struct Request {
    /// ok, loop, alloc, trap, print, empty-keys, foreign, long, many;
    /// `clock` is refused by `authorize` with the time it was asked.
    pub mode: String,
    #[serde(default)]
    pub id: u32,
}

#[model]
pub struct Data {
    pub value: f64,
}

pub struct Misbehave;

impl Route for Misbehave {
    const NAME: &'static str = "misbehave";
    type Request = Request;
    type Data = Data;

    fn topic(request: &Self::Request) -> Result<String, TopicError> {
        let ok = format!("misbehave:{}:{}", request.mode, request.id);
        match request.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Grow memory without touching it: the cap, not the
                    // deadline, must stop this.
                    hoard.push(std::hint::black_box(Vec::with_capacity(1 << 22)));
                }
            }
            "trap" => panic!("misbehave: trapping on purpose"),
            "print" => {
                for i in 0..1000 {
                    println!("misbehave stdout line {i}");
                    eprintln!("misbehave stderr line {i}");
                }
                Ok(ok)
            }
            // What the sandbox lets a plugin see: environment, files,
            // network, arguments.
            "probe" => {
                let env = std::env::vars().count();
                let args = std::env::args().count();
                let fs = match std::fs::read_dir("/") {
                    Ok(_) => "open",
                    Err(_) => "denied",
                };
                let file = match std::fs::read("/etc/passwd") {
                    Ok(_) => "open",
                    Err(_) => "denied",
                };
                let net = match std::net::TcpStream::connect("127.0.0.1:1") {
                    Ok(_) => "open",
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "open",
                    Err(_) => "denied",
                };
                Ok(format!(
                    "misbehave:probe:env={env}:args={args}:fs={fs}:file={file}:net={net}"
                ))
            }
            "foreign" => Ok("bars:stolen".to_owned()),
            "long" => Ok(format!("misbehave:{}", "x".repeat(100_000))),
            "internal" => Err(TopicError::Internal("secret detail /etc/passwd".to_owned())),
            _ => Ok(ok),
        }
    }

    fn keys(request: &Self::Request, topic: &str) -> Result<Vec<String>, TopicError> {
        match request.mode.as_str() {
            "empty-keys" => Ok(vec![]),
            // Over the host's 256-key limit, yet quick to produce: the
            // answer is what is refused, not a slow call (100,000 keys ran
            // into the 50 ms deadline on a loaded CI machine).
            "many" => Ok((0..1_000).map(|i| format!("misbehave:{i}")).collect()),
            "foreign-key" => Ok(vec!["trades:stolen".to_owned()]),
            _ => Ok(vec![topic.to_owned()]),
        }
    }

    /// Impure on purpose for `clock`: each call answers differently, so a
    /// test sees when the host reuses an answer instead of asking.
    fn authorize(_claims: Option<&Claims>, request: &Self::Request) -> Result<(), String> {
        if request.mode != "clock" {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Err(format!("asked at {now}"))
    }
}

ws_router_sdk::export_route!(Misbehave);
