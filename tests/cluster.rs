//! Redis Cluster: first the local cluster the tests start, and what
//! redis-rs's own cluster client does on it when scripts meet NOSCRIPT,
//! redirections and dead or slow nodes; then tollgate on it (the
//! conformance suite, keys over every master, resharding under load).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Script;
use redis::cluster_async::ClusterConnection;
use tollgate::{FixedWindow, Rate, RateLimiter, Redis, TokenBucket};

use crate::conformance::awkward_keys;
use crate::support::cluster::Cluster;

/// One key per call, like every tollgate script.
fn counter() -> Script {
    Script::new("local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], 60000) return n")
}

async fn count(connection: &mut ClusterConnection, key: &str) -> redis::RedisResult<i64> {
    counter().key(key).invoke_async(connection).await
}

/// Keys named `<prefix><n>`, at least one on each master.
async fn keys_on_every_master(cluster: &Cluster, prefix: &str) -> Vec<String> {
    let masters: BTreeSet<usize> = cluster.masters().await.into_iter().collect();
    let mut seen = BTreeSet::new();
    let mut keys = Vec::new();
    for n in 0.. {
        let key = format!("{prefix}{n}");
        seen.insert(cluster.master_of_key(key.as_bytes()).await);
        keys.push(key);
        if seen == masters {
            return keys;
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_cluster_has_three_masters_serving_all_slots() {
    let Some(cluster) = Cluster::start().await else { return };
    assert_eq!(cluster.masters().await.len(), 3);
    let mut connection = cluster.connect().await;
    let keys = keys_on_every_master(&cluster, "spread:").await;
    for key in &keys {
        assert_eq!(count(&mut connection, key).await.unwrap(), 1);
        // The key lives on the master that serves its slot.
        let mut owner = cluster.node(cluster.master_of_key(key.as_bytes()).await).await.unwrap();
        let stored: i64 = redis::cmd("GET").arg(key).query_async(&mut owner).await.unwrap();
        assert_eq!(stored, 1);
    }
    let stored = cluster.keys_with_ttl("spread:*").await;
    assert_eq!(stored.len(), keys.len());
    assert!(stored.iter().all(|(_, ttl)| *ttl > 0), "every key has a TTL: {stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_under_a_caller_loses_no_call_and_no_count() {
    let Some(cluster) = Cluster::start().await else { return };
    let connection = cluster.connect().await;
    // Sixteen keys in one slot, called while the slot moves.
    let keys: Vec<String> = (0..16).map(|n| format!("{{migrating}}:{n}")).collect();
    let slot = cluster.slot_of(keys[0].as_bytes()).await;
    let from = cluster.master_of_slot(slot).await;
    let to = *cluster.masters().await.iter().find(|&&master| master != from).unwrap();

    // One caller: redis-rs sends ASKING and the redirected command as two
    // requests on the node's shared connection, so concurrent callers on one
    // connection can take each other's ASKING (see docs/cluster.md).
    let stop = Arc::new(AtomicBool::new(false));
    let caller = tokio::spawn({
        let (mut connection, keys, stop) = (connection.clone(), keys.clone(), stop.clone());
        async move {
            let mut calls = vec![0_i64; keys.len()];
            for n in 0.. {
                let which = n % keys.len();
                count(&mut connection, &keys[which]).await.expect("a call during migration");
                calls[which] += 1;
                if n >= keys.len() && stop.load(Ordering::Relaxed) {
                    return calls;
                }
            }
            unreachable!()
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // One key per batch, 20 ms apart: the caller meets ASK for a while, then MOVED.
    let moved = cluster.migrate_slot(slot, to, 1, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    let calls = caller.await.unwrap();

    assert_eq!(moved, keys.len());
    assert_eq!(cluster.master_of_slot(slot).await, to);
    let mut target = cluster.node(to).await.unwrap();
    for (key, made) in keys.iter().zip(calls) {
        let stored: i64 = redis::cmd("GET").arg(key).query_async(&mut target).await.unwrap();
        assert_eq!(stored, made, "{key}: every call counted exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_and_the_same_connection_recovers() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let mut connection = cluster.connect().await;
    let key = "victim";
    let victim = cluster.master_of_key(key.as_bytes()).await;
    count(&mut connection, key).await.unwrap();

    cluster.kill(victim);
    let killed = Instant::now();
    // Calls fail (CLUSTERDOWN or connection refused) until a replica takes over.
    let recovered = loop {
        let attempt = tokio::time::timeout(Duration::from_millis(200), count(&mut connection, key)).await;
        if let Ok(Ok(_)) = attempt {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no failover after 20 s: {attempt:?}");
    };
    // The replica took over (news that reaches every node a little later).
    while cluster.master_of_key(key.as_bytes()).await == victim {
        assert!(killed.elapsed() < Duration::from_secs(20), "no node ever saw the failover");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("cluster: calls succeeded again {recovered:?} after kill -9 of a master (node timeout 500 ms)");

    cluster.restart(victim).await;
    cluster.wait_until_healthy().await;
    eprintln!("cluster: healthy again {:?} after the kill", killed.elapsed());
    assert!(count(&mut connection, key).await.unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_master_makes_calls_wait_until_it_wakes() {
    let Some(cluster) = Cluster::start().await else { return };
    let mut connection = cluster.connect().await;
    let key = "sleepy";
    count(&mut connection, key).await.unwrap();
    let sleeper = cluster.master_of_key(key.as_bytes()).await;

    let stall = cluster.stall(sleeper, Duration::from_millis(300)).await;
    let timed_out = tokio::time::timeout(Duration::from_millis(50), count(&mut connection, key)).await;
    assert!(timed_out.is_err(), "a call to a sleeping master cannot answer within 50 ms");
    stall.await.unwrap();
    assert!(count(&mut connection, key).await.unwrap() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evalsha_after_script_flush_reloads_on_every_master_even_with_a_replica_down() {
    let Some(mut cluster) = Cluster::start().await else { return };
    let mut connection = cluster.connect().await;
    let keys = keys_on_every_master(&cluster, "flush:").await;
    for key in &keys {
        assert_eq!(count(&mut connection, key).await.unwrap(), 1);
    }
    cluster.flush_scripts().await;
    for key in &keys {
        assert_eq!(count(&mut connection, key).await.unwrap(), 2);
    }
    // The reload (SCRIPT LOAD) goes to every node, and one of them is dead.
    let masters = cluster.masters().await;
    let replica = (0..6).find(|node| !masters.contains(node)).unwrap();
    cluster.kill(replica);
    cluster.flush_scripts().await;
    for key in &keys {
        assert_eq!(count(&mut connection, key).await.unwrap(), 3);
    }
}

mod conformance {
    use crate::support::deployment::{Conformance, OnCluster};

    crate::conformance::conformance_suite!(OnCluster::start().await.map(Conformance::new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_keys_are_spread_over_every_master_each_on_the_master_of_its_slot() {
    let Some(cluster) = Cluster::start().await else { return };
    let limiter = Redis::builder(FixedWindow::new(Rate::per_hour(2)).unwrap())
        .prefix("awkward:")
        .timeout(Duration::from_secs(5))
        .connect_cluster(cluster.urls())
        .await
        .unwrap();
    let mut holders = BTreeSet::new();
    for key in awkward_keys() {
        assert!(limiter.check(&key).await.unwrap().is_allowed(), "key {key:?}");
        let redis_key = limiter.redis_key(&key);
        let holder = cluster.master_of_key(redis_key.as_bytes()).await;
        let mut node = cluster.node(holder).await.unwrap();
        let ttl_ms: i64 = redis::cmd("PTTL").arg(&redis_key).query_async(&mut node).await.unwrap();
        assert!(ttl_ms > 0, "key {key:?} is on the master of its slot, with a TTL");
        holders.insert(holder);
    }
    assert_eq!(holders.into_iter().collect::<Vec<_>>(), cluster.masters().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_under_concurrent_checks_fails_none_and_admits_exactly_the_limit() {
    let Some(cluster) = Cluster::start().await else { return };
    let capacity = 200;
    // A token an hour: nothing refills during the test.
    let limiter = Redis::builder(TokenBucket::new(capacity, Rate::per_hour(1)).unwrap())
        .prefix("migrating:")
        .timeout(Duration::from_secs(5))
        .connect_cluster(cluster.urls())
        .await
        .unwrap();
    // "t}0" is stored at "migrating:{t}0}", whose hash tag is "t": one slot for all.
    let keys: Vec<String> = (0..16).map(|n| format!("t}}{n}")).collect();
    let slot = cluster.slot_of(limiter.redis_key(&keys[0]).as_bytes()).await;
    let from = cluster.master_of_slot(slot).await;
    let to = *cluster.masters().await.iter().find(|&&master| master != from).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (limiter, keys, stop) = (limiter.clone(), keys.clone(), stop.clone());
            tokio::spawn(async move {
                let mut admitted = vec![0_u64; keys.len()];
                let mut calls = 0;
                // Until the migration is over, and enough calls to exhaust every key.
                while !stop.load(Ordering::Relaxed) || calls < 2 * capacity as usize {
                    let which = (task + calls) % keys.len();
                    let decision = limiter.check(&keys[which]).await.expect("no check fails during a migration");
                    admitted[which] += u64::from(decision.is_allowed());
                    calls += 1;
                }
                admitted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let moved = cluster.migrate_slot(slot, to, 1, Duration::from_millis(20)).await;
    stop.store(true, Ordering::Relaxed);
    let mut admitted = vec![0_u64; keys.len()];
    for task in tasks {
        for (total, by_task) in admitted.iter_mut().zip(task.await.unwrap()) {
            *total += by_task;
        }
    }
    assert_eq!(cluster.master_of_slot(slot).await, to);
    assert!(moved > 0, "keys moved while checks ran");
    assert_eq!(admitted, vec![capacity; keys.len()], "each key admitted exactly its capacity");
}
