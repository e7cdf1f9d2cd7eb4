//! One plugin topic-builder call (`Plugin::topics`) on the bars plugin:
//! what every subscribe and every publish-by-request pays. Target < 2 µs.
//! And one `authorize` call, which no cache answers: what a plugin call costs.
//!
//! Run: `just build-plugins && cargo bench -p bench --bench topic_builder`.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ws_router_host::{Limits, plugin::PluginEngine};

fn topic_builder(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/bars.wasm");
    assert!(
        wasm.exists(),
        "{} is not built: run `just build-plugins`",
        wasm.display()
    );
    let plugin = runtime.block_on(async {
        let engine = PluginEngine::new(Limits::default().plugin()).expect("engine");
        engine.load_path(&wasm, None).await.expect("load bars.wasm")
    });
    let request = r#"{"symbol":"AAPL","resolution":"5"}"#;
    c.bench_function("bars_topics", |b| {
        b.to_async(&runtime).iter(|| async {
            plugin
                .topics(request)
                .await
                .expect("bars resolves the request")
        })
    });
    // Never cached (claims may change): a plugin call's whole cost, the
    // guest's own work (parsing the request) included.
    c.bench_function("bars_authorize", |b| {
        b.to_async(&runtime).iter(|| async {
            plugin
                .authorize("null", request)
                .await
                .expect("bars allows every request")
        })
    });
}

criterion_group!(benches, topic_builder);
criterion_main!(benches);
