//! A Kafka-protocol-aware TCP proxy that injects faults between hookstream and a real broker.
//!
//! The broker advertises the proxy's port, so every connection a client makes goes through it.
//! Requests are read frame by frame (4-byte length, then the request; its first two bytes are
//! the API key), so the proxy can treat produce requests (API key 0) differently from metadata
//! and admin requests — which is how "writes fail while metadata requests succeed" is made.
//! Whole-network faults hold every byte in both directions ([`Fault::Stall`]), or cut every
//! connection with a FIN ([`Fault::Refuse`]) or a reset ([`Fault::Reset`]).

use super::tools::{free_port, Broker, Storage};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PRODUCE: i16 = 0;

/// What the proxy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Swallow produce requests (never forwarded, never answered); forward everything else.
    StallProduce,
    /// Hold each produce request this long before forwarding it.
    DelayProduce(Duration),
    /// Close every connection and refuse new ones: the broker is unreachable.
    Refuse,
    /// Forward nothing in either direction, requests or responses, until the fault changes
    /// (connections stay open, new ones are accepted and held too): a partitioned network.
    Stall,
    /// Reset every connection (RST, not FIN) and reset new ones at once: a network that drops
    /// connections, or a middlebox that forgot them.
    Reset,
}

impl Fault {
    /// Whether connections are cut (and new ones turned away).
    fn cuts(self) -> bool {
        matches!(self, Fault::Refuse | Fault::Reset)
    }
}

/// A broker behind a proxy. Dropping it stops both.
pub struct ProxiedBroker {
    pub broker: Broker,
    /// Where clients connect (the proxy).
    pub port: u16,
    fault: watch::Sender<Fault>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxiedBroker {
    /// A fresh in-memory broker behind a proxy that starts without a fault.
    pub async fn start() -> Self {
        let proxy_port = free_port();
        let broker = Broker::start_on(free_port(), proxy_port, Storage::Memory).await;
        let listener = TcpListener::bind(("127.0.0.1", proxy_port))
            .await
            .expect("proxy listens");
        let (fault, watch) = watch::channel(Fault::None);
        let upstream = format!("127.0.0.1:{}", broker.port);
        let task = tokio::spawn(accept(listener, upstream, watch));
        Self {
            broker,
            port: proxy_port,
            fault,
            task,
        }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for ProxiedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: String, fault: watch::Receiver<Fault>) {
    while let Ok((client, _)) = listener.accept().await {
        let current = *fault.borrow();
        if current.cuts() {
            if current == Fault::Reset {
                let _ = client.set_zero_linger();
            }
            drop(client);
            continue;
        }
        tokio::spawn(relay(client, upstream.clone(), fault.clone()));
    }
}

async fn relay(mut client: TcpStream, upstream: String, mut fault: watch::Receiver<Fault>) {
    let Ok(mut broker) = TcpStream::connect(&upstream).await else {
        return;
    };
    {
        let (mut from_client, to_client) = client.split();
        let (from_broker, to_broker) = broker.split();
        let requests = forward_requests(&mut from_client, to_broker, fault.clone());
        let responses = forward_responses(from_broker, to_client, fault.clone());
        let cut = async {
            let _ = fault.wait_for(|f| f.cuts()).await;
        };
        tokio::select! {
            _ = requests => {}
            _ = responses => {}
            () = cut => {}
        }
    }
    if *fault.borrow() == Fault::Reset {
        // Dropped with a zero linger: both ends see a reset rather than an orderly close.
        let _ = client.set_zero_linger();
        let _ = broker.set_zero_linger();
    }
}

/// Waits while the network is stalled.
async fn unstalled(fault: &mut watch::Receiver<Fault>) {
    let _ = fault.wait_for(|f| *f != Fault::Stall).await;
}

/// Copies the broker's responses to the client, holding them while stalled.
async fn forward_responses(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut fault: watch::Receiver<Fault>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        unstalled(&mut fault).await;
        to.write_all(&buf[..n]).await?;
    }
}

async fn forward_requests(
    from: &mut (impl AsyncRead + Unpin),
    mut to: impl AsyncWrite + Unpin,
    mut fault: watch::Receiver<Fault>,
) -> io::Result<()> {
    loop {
        let mut length = [0u8; 4];
        from.read_exact(&mut length).await?;
        let mut request = vec![0u8; u32::from_be_bytes(length) as usize];
        from.read_exact(&mut request).await?;
        let api_key = request
            .get(..2)
            .map_or(-1, |k| i16::from_be_bytes([k[0], k[1]]));
        if api_key == PRODUCE {
            let current = *fault.borrow();
            match current {
                Fault::StallProduce => continue,
                Fault::DelayProduce(delay) => tokio::time::sleep(delay).await,
                Fault::None | Fault::Refuse | Fault::Stall | Fault::Reset => {}
            }
        }
        unstalled(&mut fault).await;
        to.write_all(&length).await?;
        to.write_all(&request).await?;
    }
}

/// A plain TCP proxy in front of any server (Redis), adding latency to every chunk in both
/// directions, or holding everything while frozen. Dropping it stops it.
pub struct LatencyProxy {
    pub port: u16,
    latency: watch::Sender<(Duration, bool)>,
    task: tokio::task::JoinHandle<()>,
}

impl LatencyProxy {
    /// A proxy to `127.0.0.1:upstream_port`, without latency.
    pub async fn start(upstream_port: u16) -> Self {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("proxy listens");
        let (latency, watch) = watch::channel((Duration::ZERO, false));
        let upstream = format!("127.0.0.1:{upstream_port}");
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::select! {
                        _ = delayed(from_client, to_server, watch.clone()) => {}
                        _ = delayed(from_server, to_client, watch) => {}
                    }
                });
            }
        });
        Self {
            port,
            latency,
            task,
        }
    }

    /// `redis://127.0.0.1:PORT`, through the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Each chunk read from now on is forwarded this much later.
    pub fn set_latency(&self, latency: Duration) {
        self.latency.send_modify(|(l, _)| *l = latency);
    }

    /// Frozen: nothing is forwarded (connections stay open) until thawed.
    pub fn set_frozen(&self, frozen: bool) {
        self.latency.send_modify(|(_, f)| *f = frozen);
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut settings: watch::Receiver<(Duration, bool)>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let (latency, _) = *settings.borrow();
        tokio::time::sleep(latency).await;
        let _ = settings.wait_for(|(_, frozen)| !frozen).await;
        to.write_all(&buf[..n]).await?;
    }
}
