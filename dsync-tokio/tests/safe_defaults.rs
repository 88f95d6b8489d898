//! The defaults a new user gets: restarts are safe without opting in, readiness can be awaited, the lock API
//! says why an attempt failed, guards keep their node alive, and bad settings are refused with context.

mod common;

use common::{quick, rebind, soon, SECRET};
use dsync_tokio::core::Config;
use dsync_tokio::{LockError, Node, NodeBuilder, Serving, StartError};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    (ls, addrs)
}

/// Waits until a bootstrapping node has decided, and returns what it decided.
async fn decided(node: &Node) -> Serving {
    soon("the bootstrap decides", async {
        loop {
            match node.status().serving {
                Serving::Bootstrapping { .. } => tokio::time::sleep(Duration::from_millis(5)).await,
                other => return other,
            }
        }
    })
    .await
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsync-safe-defaults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A bootstrapped cluster of `n` with short leases, every node ready.
async fn ready_cluster(n: usize, tweak: fn(&mut Config)) -> (Vec<SocketAddr>, Vec<Node>) {
    let (ls, addrs) = listeners(n);
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let b = NodeBuilder::new(addrs.clone(), i).secret(SECRET).bootstrap().listener(l).configure(tweak);
        nodes.push(b.start_tcp().await.expect("node starts"));
    }
    for node in &nodes {
        soon("ready", node.ready()).await.expect("ready");
    }
    (addrs, nodes)
}

/// The issue's scenario: node 0 holds `r`; nodes 1 and 2 crash and start again with the default settings
/// (no state directory). Before, they booted fresh and node 1 got `r` with node 0's token while node 0's
/// guard was still valid. Now they restart: they rejoin (node 0's grant is reinstalled, so it is refused as
/// held) and need a floor that only node 0 knows, so they grant nothing and node 1 cannot get the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_a_state_dir_never_gives_a_second_writer_the_lock() {
    let (addrs, mut nodes) = ready_cluster(3, quick).await;
    let held = soon("node 0 locks r", nodes[0].mutex(["r"]).lock()).await.unwrap();
    let token = held.fencing_token();
    for i in [1, 2] {
        nodes[i].crash().await;
    }
    for i in [1, 2] {
        let l = rebind(addrs[i]).await;
        nodes[i] =
            NodeBuilder::new(addrs.clone(), i).secret(SECRET).listener(l).configure(quick).start_tcp().await.unwrap();
    }
    let status = nodes[1].status();
    assert!(
        matches!(status.serving, Serving::Quarantined { .. } | Serving::RecoveringFloor { .. }),
        "a node started with the defaults must not serve at once: {status:?}"
    );
    // Well past the quarantine (lease 1.5 s): the restarted nodes still grant nothing.
    let got = nodes[1].mutex(["r"]).try_lock_for(Duration::from_secs(4)).await;
    match got {
        // Held by node 0 (its reinstalled grant), or no quorum: never granted.
        Err(LockError::Timeout | LockError::NoQuorum) => {}
        Ok(g) => panic!("node 1 got r with token {} while node 0 held token {token}", g.fencing_token()),
        Err(e) => panic!("expected Timeout or NoQuorum, got {e}"),
    }
    assert!(matches!(nodes[1].status().serving, Serving::RecoveringFloor { .. }), "{:?}", nodes[1].status());
    drop(held);
}

/// The same with `bootstrap()` left on, as in a service definition: the peers have history, so the node
/// restarts safely; with one node restarted, the floor is known, every peer answers its rejoin, and it serves
/// again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_left_on_restarts_safely_and_rejoins_with_higher_tokens() {
    let (addrs, mut nodes) = ready_cluster(3, quick).await;
    let first = soon("node 1 locks r", nodes[1].mutex(["r"]).lock()).await.unwrap().fencing_token();
    nodes[1].crash().await;
    let l = rebind(addrs[1]).await;
    nodes[1] = NodeBuilder::new(addrs.clone(), 1)
        .secret(SECRET)
        .bootstrap()
        .listener(l)
        .configure(quick)
        .start_tcp()
        .await
        .unwrap();
    soon("ready after the rejoin", nodes[1].ready()).await.unwrap();
    // History found: a restart whose quarantine the rejoin cut short (PROTOCOL.md §6.7), not a fresh boot.
    assert_eq!(nodes[1].counters().await.unwrap().rejoins, 1, "a restarted member must not boot fresh");
    let again = soon("lock after restart", nodes[1].mutex(["r"]).lock()).await.unwrap();
    assert!(again.fencing_token() > first, "tokens keep increasing: {} after {first}", again.fencing_token());
}

/// A state directory wiped (or replaced by an empty one) while the cluster runs: the node finds peers with
/// history and restarts safely instead of booting fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_state_dir_restarts_safely_instead_of_booting_fresh() {
    let dir = scratch("wiped");
    let (ls, addrs) = listeners(3);
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let b = NodeBuilder::new(addrs.clone(), i).secret(SECRET).state_dir(dir.join(i.to_string())).listener(l);
        nodes.push(b.configure(quick).start_tcp().await.unwrap());
    }
    for node in &nodes {
        soon("ready", node.ready()).await.unwrap();
    }
    let held = soon("node 0 locks r", nodes[0].mutex(["r"]).lock()).await.unwrap();
    nodes[2].crash().await;
    std::fs::remove_dir_all(dir.join("2")).unwrap();
    let l = rebind(addrs[2]).await;
    nodes[2] = NodeBuilder::new(addrs.clone(), 2)
        .secret(SECRET)
        .state_dir(dir.join("2"))
        .listener(l)
        .configure(quick)
        .start_tcp()
        .await
        .unwrap();
    decided(&nodes[2]).await;
    soon("ready after the rejoin", nodes[2].ready()).await.unwrap();
    assert_eq!(nodes[2].counters().await.unwrap().rejoins, 1, "history found: a restart, not a fresh boot");
    // Node 0's grant was reinstalled by the rejoin: r is still held.
    assert_eq!(nodes[2].mutex(["r"]).try_lock().await.unwrap_err(), LockError::WouldBlock);
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ready()` resolves once serving with a quorum connected, and the first lock then takes one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_ready_the_first_lock_of_a_new_cluster_takes_one_attempt() {
    let (_, nodes) = ready_cluster(3, |_| {}).await;
    let status = nodes[0].status();
    assert!(status.ready && status.serving == Serving::Serving, "{status:?}");
    assert_eq!(status.peers_up, vec![1, 2]);
    let g = soon("first lock", nodes[0].mutex(["first"]).lock()).await.unwrap();
    drop(g);
    let c = nodes[0].counters().await.unwrap();
    assert_eq!((c.acquired, c.retries), (1, 0), "the first lock needed retries: {c:?}");
}

/// A lock asked for before the peers are connected goes out again as each peer comes up, instead of waiting
/// out its attempt (here a minute, longer than the test's patience).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_asked_before_peers_connect_is_granted_when_they_come_up() {
    fn slow_attempts(c: &mut Config) {
        c.lease = Duration::from_secs(600);
        c.refresh_interval = Duration::from_secs(200);
        c.attempt_timeout = Duration::from_secs(60);
    }
    let (ls, addrs) = listeners(3);
    let mut ls = ls.into_iter();
    let start = |i: usize, l: TcpListener| {
        NodeBuilder::new(addrs.clone(), i)
            .secret(SECRET)
            .unsafe_skip_restart_safety()
            .listener(l)
            .configure(slow_attempts)
            .start_tcp()
    };
    let first = start(0, ls.next().unwrap()).await.unwrap();
    let lock = first.mutex(["early"]);
    let pending = tokio::spawn(async move { lock.lock().await.map(|g| g.fencing_token()) });
    let _others = [start(1, ls.next().unwrap()).await.unwrap(), start(2, ls.next().unwrap()).await.unwrap()];
    let token = soon("the early lock", pending).await.unwrap().unwrap();
    assert!(token >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_lock_tells_held_by_others_from_no_quorum() {
    let (_, nodes) = ready_cluster(3, quick).await;
    let free = nodes[1].mutex(["free"]).try_lock().await.expect("a free lock is granted at once");
    drop(free);
    let held = nodes[0].mutex(["r"]).lock().await.unwrap();
    assert_eq!(nodes[1].mutex(["r"]).try_lock().await.unwrap_err(), LockError::WouldBlock);
    assert_eq!(nodes[1].mutex(["r"]).try_lock_for(Duration::ZERO).await.unwrap_err(), LockError::WouldBlock);
    assert_eq!(nodes[1].rwlock(["r"]).try_read().await.unwrap_err(), LockError::WouldBlock);
    let zero = nodes[2].mutex(["other"]).try_lock_for(Duration::ZERO).await.expect("zero timeout on a free lock");
    drop(zero);
    assert_eq!(nodes[1].mutex(["r"]).try_lock_for(Duration::from_millis(300)).await.unwrap_err(), LockError::Timeout);
    drop(held);
    nodes[1].crash().await;
    nodes[2].crash().await;
    assert_eq!(nodes[0].mutex(["alone"]).try_lock().await.unwrap_err(), LockError::NoQuorum);
}

/// `lock()` without a quorum does not fail: it waits, and resolves once the quorum is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_without_a_quorum_waits_until_the_quorum_is_back() {
    let dir = scratch("noquorum");
    let (ls, addrs) = listeners(3);
    let build = |i: usize, l: TcpListener| {
        NodeBuilder::new(addrs.clone(), i)
            .secret(SECRET)
            .state_dir(dir.join(i.to_string()))
            .listener(l)
            .configure(quick)
    };
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        nodes.push(build(i, l).start_tcp().await.unwrap());
    }
    for node in &nodes {
        soon("ready", node.ready()).await.unwrap();
    }
    nodes[1].crash().await;
    nodes[2].crash().await;
    let lock = nodes[0].mutex(["w"]);
    let waiting = tokio::spawn(async move { lock.lock().await.map(|g| g.fencing_token()) });
    // Still waiting after several attempts' worth of time (attempt 300 ms): no error without a deadline.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), async {
            while !waiting.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_err(),
        "lock() gave up without a quorum"
    );
    for i in [1, 2] {
        let l = rebind(addrs[i]).await;
        nodes[i] = build(i, l).start_tcp().await.unwrap();
    }
    assert!(soon("the waiting lock", waiting).await.unwrap().unwrap() >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A guard keeps its node's driver running even when every `Node` handle is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_keeps_its_node_alive() {
    let (ls, addrs) = listeners(1);
    let l = ls.into_iter().next().unwrap();
    let guard = NodeBuilder::new(addrs, 0)
        .secret(SECRET)
        .bootstrap()
        .listener(l)
        .configure(quick)
        .start_tcp()
        .await
        .unwrap()
        .mutex(["x"])
        .lock()
        .await
        .unwrap();
    // Three leases (1.5 s each): the lease is refreshed, so it is never lost.
    let lost = tokio::time::timeout(Duration::from_millis(4500), guard.lost()).await;
    assert!(lost.is_err() && !guard.is_lost(), "the guard was lost once its node handle was dropped");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_missing_or_empty_secret_is_refused() {
    let (ls, addrs) = listeners(1);
    let l = ls.into_iter().next().unwrap();
    let err = NodeBuilder::new(addrs.clone(), 0).bootstrap().start_tcp().await.unwrap_err();
    assert!(matches!(err, StartError::MissingSecret), "{err}");
    let err = NodeBuilder::new(addrs, 0).secret("").bootstrap().listener(l).start_tcp().await.unwrap_err();
    assert!(matches!(err, StartError::MissingSecret), "{err}");
    assert!(err.to_string().contains("secret"));
}

#[tokio::test]
async fn bad_settings_are_refused_with_what_and_how_to_fix() {
    let (_ls, addrs) = listeners(3);
    let twice = vec![addrs[0], addrs[1], addrs[0]];
    let err = NodeBuilder::new(twice, 1).secret(SECRET).start_tcp().await.unwrap_err().to_string();
    assert!(err.contains(&addrs[0].to_string()) && err.contains("twice"), "{err}");

    let err = NodeBuilder::new(addrs.clone(), 0).secret(SECRET).configure(|c| c.id = 2).start_tcp().await.unwrap_err();
    assert!(matches!(err, StartError::Conflict(_)) && err.to_string().contains('2'), "{err}");

    let err = NodeBuilder::new(addrs.clone(), 3).secret(SECRET).start_tcp().await.unwrap_err().to_string();
    assert!(err.contains("index 3"), "{err}");

    let err = NodeBuilder::new(addrs.clone(), 0)
        .secret(SECRET)
        .configure(|c| c.lease = Duration::from_secs(3))
        .start_tcp()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refresh_interval") && err.contains("10") && err.contains("3"), "{err}");

    let err = NodeBuilder::new(addrs.clone(), 0).secret(SECRET).state_dir(scratch("conflict")).bootstrap();
    let err = err.start_tcp().await.unwrap_err();
    assert!(matches!(err, StartError::Conflict(_)), "{err}");

    let (one, one_addr) = listeners(1);
    drop(one);
    let err = NodeBuilder::new(one_addr, 0).secret(SECRET).start_tcp().await.unwrap_err();
    assert!(matches!(err, StartError::NeedsStateDir) && err.to_string().contains("state directory"), "{err}");
}

#[tokio::test]
async fn start_errors_name_the_address_or_path_and_keep_their_source() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = NodeBuilder::new(vec![addr], 0).secret(SECRET).bootstrap().start_tcp().await.unwrap_err();
    assert!(matches!(err, StartError::Bind { .. }) && err.to_string().contains(&addr.to_string()), "{err}");
    assert!(std::error::Error::source(&err).is_some());

    let file = scratch("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (ls, addrs) = listeners(1);
    let l = ls.into_iter().next().unwrap();
    let err = NodeBuilder::new(addrs, 0).secret(SECRET).state_dir(file.join("d")).listener(l).start_tcp().await;
    let err = err.unwrap_err();
    assert!(err.to_string().contains(&*file.display().to_string()), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_queries_report_invalid_names_not_overload() {
    let (_, nodes) = ready_cluster(1, quick).await;
    let long = "x".repeat(5000);
    assert!(matches!(nodes[0].holders(Some(&long)).await, Err(LockError::Invalid(_))));
}

/// A lone node on an empty state directory writes its first floor at once and becomes ready, although no
/// peer, timer or command ever wakes its driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_node_cluster_with_a_state_dir_becomes_ready() {
    let dir = scratch("lone");
    let (ls, addrs) = listeners(1);
    let l = ls.into_iter().next().unwrap();
    let node = NodeBuilder::new(addrs, 0).secret(SECRET).state_dir(&dir).listener(l).start_tcp().await.unwrap();
    soon("ready", node.ready()).await.unwrap();
    let token = node.mutex(["x"]).try_lock().await.expect("a lone ready node grants").fencing_token();
    assert!(token >= 1);
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
