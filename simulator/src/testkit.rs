//! A fake HTTP server for tests: one closure answers every request. For the
//! odd behaviours the simulator does not model (an API that ignores `from`,
//! a webhook receiver that fails on purpose), so no test hand-writes its own
//! accept loop.
//!
//! Behind the `testkit` feature: the exporter's tests and this crate's own
//! tests turn it on; the demo build carries none of it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Serves HTTP/1 on a fresh loopback port, answering each request with
/// `handler(request)`, until the runtime ends. Returns the address.
pub async fn fake_server<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the fake server");
    let addr = listener.local_addr().expect("the fake server's address");
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                // A client hanging up mid-answer is its business, not the test's.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A 200 answer with `body`.
pub fn ok(body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::new(Full::new(body.into()))
}
