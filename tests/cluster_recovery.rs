//! Issue 16 with the Redis broker: histories in Redis streams, so offsets
//! are the same on every node and a client recovers on whichever node it
//! reconnects to. A real `redis-server` and two real host processes.

#[path = "support/recovery.rs"]
mod recovery;
#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::time::Duration;

use recovery::{BARS, position, publish_bars, recover_from, subscribe_bars, update};
use redis_server::{
    Redis,
    nodes::{connected, node, until, up},
};
use support::Client;

/// The next frame, a bars update: (time, offset, epoch).
async fn bars_update(c: &mut Client) -> (u64, u64, String) {
    let p = update(c, "bars").await;
    (
        p["payload"]["time"].as_u64().unwrap(),
        p["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("no offset: {p}")),
        p["epoch"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn offsets_are_the_same_on_every_node_and_a_client_recovers_on_the_other_node() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    let (start, epoch) = position(&subscribe_bars(&mut on_a, None).await, BARS);
    assert_eq!(start, 0);
    assert_eq!(
        position(&subscribe_bars(&mut on_b, None).await, BARS),
        (0, epoch.clone())
    );
    // Published on both nodes, one after the other.
    publish_bars(&a, [1, 2, 3]).await;
    publish_bars(&b, [4, 5]).await;
    for client in [&mut on_a, &mut on_b] {
        for n in 1..=5 {
            assert_eq!(bars_update(client).await, (n, n, epoch.clone()));
        }
    }
    on_a.close().await;
    // Missed: published on both nodes while the client is away.
    publish_bars(&a, [6]).await;
    publish_bars(&b, [7, 8]).await;
    for n in 6..=8 {
        assert_eq!(bars_update(&mut on_b).await, (n, n, epoch.clone()));
    }
    // It comes back on B.
    let mut back = b.client().await;
    let reply = subscribe_bars(&mut back, Some(recover_from(BARS, 5, &epoch))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(position(&reply, BARS), (8, epoch.clone()));
    for n in 6..=8 {
        assert_eq!(bars_update(&mut back).await, (n, n, epoch.clone()));
    }
    // Then live updates, from either node, no duplicate.
    publish_bars(&a, [9]).await;
    assert_eq!(bars_update(&mut back).await, (9, 9, epoch.clone()));
    publish_bars(&b, [10]).await;
    assert_eq!(bars_update(&mut back).await, (10, 10, epoch.clone()));
    back.expect_silence(Duration::from_millis(300)).await;
    // The stream in Redis holds them, with those offsets.
    let ids = redis.command(&["XLEN", &format!("ws-router:h:{BARS}")]);
    assert_eq!(ids.trim(), "10");
}

#[tokio::test]
async fn a_snapshot_on_one_node_of_a_key_published_on_the_other() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    // Nobody subscribed anywhere.
    let results = publish_bars(&a, [1, 2]).await;
    assert_eq!(results[1]["cluster"], "ok", "{results:?}");
    let mut on_b = b.client().await;
    let reply = subscribe_bars(&mut on_b, None).await;
    let (offset, epoch) = position(&reply, BARS);
    assert_eq!(offset, 2);
    assert_eq!(bars_update(&mut on_b).await, (2, 2, epoch));
    on_b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_wrong_epoch_or_an_offset_older_than_the_history_is_not_recovered() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    // bars keeps 500 updates per key.
    publish_bars(&a, 1..=520).await;
    let mut on_b = b.client().await;
    let (offset, epoch) = position(&subscribe_bars(&mut on_b, None).await, BARS);
    assert_eq!(offset, 520);
    assert_eq!(bars_update(&mut on_b).await.1, 520);
    on_b.close().await;

    let mut c = b.client().await;
    let reply = subscribe_bars(&mut c, Some(recover_from(BARS, 3, &epoch))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    // Nothing replayed: the snapshot only.
    assert_eq!(bars_update(&mut c).await.1, 520);
    c.expect_silence(Duration::from_millis(300)).await;
    c.close().await;

    let mut c = a.client().await;
    let reply = subscribe_bars(&mut c, Some(recover_from(BARS, 515, "0123456789ab"))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(bars_update(&mut c).await.1, 520);
    c.close().await;

    // Within the history it is.
    let mut c = a.client().await;
    let reply = subscribe_bars(&mut c, Some(recover_from(BARS, 515, &epoch))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    for n in 516..=520 {
        assert_eq!(bars_update(&mut c).await.1, n);
    }
    c.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn redis_down_and_back_never_claims_a_false_recovery_and_local_delivery_goes_on() {
    let mut redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let mut on_a = a.client().await;
    let (_, epoch) = position(&subscribe_bars(&mut on_a, None).await, BARS);
    publish_bars(&a, [1, 2]).await;
    assert_eq!(bars_update(&mut on_a).await, (1, 1, epoch.clone()));
    assert_eq!(bars_update(&mut on_a).await, (2, 2, epoch.clone()));

    redis.kill();
    until("A sees Redis down", async || !up(&a).await).await;
    // Local delivery goes on, in this node's own epoch.
    let results = publish_bars(&a, [3]).await;
    assert_eq!(results[0]["cluster"], "unavailable", "{results:?}");
    let (time, _, local_epoch) = bars_update(&mut on_a).await;
    assert_eq!(time, 3);
    assert_ne!(local_epoch, epoch);

    redis.restart();
    connected(&a, &b).await;
    // Redis lost everything: whoever stood at 2 in the old epoch, or in A's
    // own epoch, recovers nothing, on either node.
    for (host, from) in [
        (&b, recover_from(BARS, 2, &epoch)),
        (&a, recover_from(BARS, 1, &local_epoch)),
    ] {
        let mut c = host.client().await;
        let reply = subscribe_bars(&mut c, Some(from)).await;
        assert_eq!(reply["recovered"], false, "{reply}");
        c.close().await;
    }
    // Cross-node delivery again, with the same (new) offsets on both nodes.
    let mut on_b = b.client().await;
    let (_, fresh) = position(&subscribe_bars(&mut on_b, None).await, BARS);
    assert_ne!(fresh, epoch);
    publish_bars(&b, [4]).await;
    let seen_b = bars_update(&mut on_b).await;
    // A's client may see this epoch's first update only once A is
    // subscribed in Redis again; bounded by the wait above.
    let seen_a = bars_update(&mut on_a).await;
    assert_eq!(seen_a, seen_b);
    assert_eq!(seen_a.0, 4);
    assert_eq!(seen_a.2, fresh);
}

#[tokio::test]
async fn a_batch_is_queued_to_redis_whole_and_arrives_in_order_on_both_nodes() {
    // A batch's updates are all queued before any answer is awaited (one
    // Redis round trip per batch, not per update): order and offsets must
    // still be exactly the batch's.
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    let (_, epoch) = position(&subscribe_bars(&mut on_a, None).await, BARS);
    subscribe_bars(&mut on_b, None).await;
    let results = publish_bars(&a, 1..=200).await;
    assert_eq!(results.len(), 200);
    assert!(
        results.iter().all(|r| r["cluster"] == "ok"),
        "{:?}",
        results.first()
    );
    for client in [&mut on_a, &mut on_b] {
        for n in 1..=200 {
            assert_eq!(bars_update(client).await, (n, n, epoch.clone()));
        }
        client.expect_silence(Duration::from_millis(200)).await;
    }
}
