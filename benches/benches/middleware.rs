//! The tower middleware in an axum router, against the same router with no
//! layer, with tollgate's headers as static values, and with tower_governor:
//! the routers of `examples/middleware_overhead` (see its `variants.rs`),
//! driven in process with no network, so that what is left is the layer's
//! own work and the headers it writes (hyper's encoding of them is not in
//! it; `examples/middleware_overhead.rs` measures that end to end with wrk).
//!
//! Groups (each request is one element of throughput):
//!
//! - `middleware/allowed`: every request admitted, one client IP.
//! - `middleware/denied`: every request after the first answered 429.
//!
//! Each iteration is `variants::request`: a `GET /` with the client's
//! address in a `ConnectInfo`, called, polled once with a no-op waker (an
//! in-memory check and the handler never wait), the response dropped; each
//! bench checks the status of every response. The same loop under callgrind
//! (`cargo run --release --example middleware_overhead --features tower --
//! count`) gives instructions and allocations per request, which do not
//! move with the machine's load as times do.

use std::net::SocketAddr;

use axum::http::StatusCode;
use criterion::{Criterion, Throughput};

#[path = "../../examples/middleware_overhead/variants.rs"]
mod variants;

fn group(c: &mut Criterion, name: &str, names: &[&str], expected: StatusCode) {
    let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for &variant in names {
        let mut router = variants::router(variant).unwrap();
        // The denying variants admit the first request.
        variants::request(&mut router, client);
        group.bench_function(variant, |b| {
            b.iter(|| {
                let status = variants::request(&mut router, client);
                assert_eq!(status, expected, "{variant}");
            })
        });
    }
    group.finish();
}

pub(crate) fn benches(c: &mut Criterion) {
    let allowed = variants::VARIANTS.iter().copied().filter(|v| !v.ends_with("denied")).collect::<Vec<_>>();
    group(c, "middleware/allowed", &allowed, StatusCode::OK);
    group(c, "middleware/denied", &["tollgate-denied", "governor-denied"], StatusCode::TOO_MANY_REQUESTS);
}
