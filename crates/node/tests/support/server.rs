//! A running RESP server and admin port over a fresh [`Backend`], on
//! loopback ports, with its own runtime: for the synchronous tests that
//! talk to it through the `redis` crate or raw sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballast_node::server::{Metrics, RespServer, ServerConfig};
use ballast_storage::ManualClock;
use tempfile::TempDir;

use super::backend::{open_backend, Backend, START_MS};
use super::resp::Raw;

/// A running server (RESP and admin) over a fresh backend.
pub struct TestNode {
    pub runtime: tokio::runtime::Runtime,
    pub backend: Arc<Backend>,
    pub clock: Arc<ManualClock>,
    pub metrics: Arc<Metrics>,
    pub resp_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
    _dir: TempDir,
}

impl TestNode {
    pub fn start(config: ServerConfig) -> TestNode {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(START_MS);
        let backend = runtime.block_on(open_backend(dir.path(), clock.clone()));
        let server = RespServer::new(backend.clone(), config).expect("valid config");
        let metrics = server.metrics();
        let (resp, admin) = runtime.block_on(async {
            (
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            )
        });
        let resp_addr = resp.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        backend.set_client_addr(resp_addr);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let admin_api = backend.clone();
        let admin_metrics = metrics.clone();
        let served = runtime.spawn(async move {
            let stop = async move {
                let _ = stop.await;
            };
            let (stop_resp, stop_admin) = split_signal(stop);
            let (resp, admin) = tokio::join!(
                server.serve(resp, stop_resp),
                ballast_node::admin::serve(admin_api, admin_metrics, admin, stop_admin)
            );
            resp.expect("RESP server");
            admin.expect("admin server");
        });
        TestNode {
            runtime,
            backend,
            clock,
            metrics,
            resp_addr,
            admin_addr,
            shutdown: Some(shutdown),
            served: Some(served),
            _dir: dir,
        }
    }

    /// A `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.resp_addr)).unwrap();
        let connection = client.get_connection().expect("connect");
        connection
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        connection
    }

    /// A raw RESP connection.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.resp_addr)
    }

    /// Tells the servers to shut down, without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops the servers and waits for them to return.
    pub fn stop(&mut self) {
        self.begin_stop();
        if let Some(served) = self.served.take() {
            self.runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(20), served).await })
                .expect("servers stop within 20 s")
                .expect("servers returned cleanly");
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        }
    }
}

/// Two futures that both complete when `signal` does.
fn split_signal(
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> (
    impl std::future::Future<Output = ()> + Send,
    impl std::future::Future<Output = ()> + Send,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = tx.send(true);
    });
    let mut a = rx.clone();
    let mut b = rx;
    (
        async move {
            let _ = a.wait_for(|stop| *stop).await;
        },
        async move {
            let _ = b.wait_for(|stop| *stop).await;
        },
    )
}
