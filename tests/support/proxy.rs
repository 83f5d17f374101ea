//! A Kafka-protocol-aware TCP proxy that injects faults between hookstream and a real broker.
//!
//! The broker advertises the proxy's port, so every connection a client makes goes through it.
//! Requests are read frame by frame (4-byte length, then the request; its first two bytes are
//! the API key), so the proxy can treat produce requests (API key 0) differently from metadata
//! and admin requests — which is how "writes fail while metadata requests succeed" is made.
//! CreateTopics requests (API key 19) can be answered by the proxy itself with
//! `TOPIC_AUTHORIZATION_FAILED`, as a cluster whose ACLs deny CREATE answers
//! ([`Fault::DenyCreateTopics`]): Tansu has no ACLs. Whole-network faults hold every byte in both directions ([`Fault::Stall`]), or cut every
//! connection with a FIN ([`Fault::Refuse`]) or a reset ([`Fault::Reset`]).

use super::tools::{free_port, Broker, Storage};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PRODUCE: i16 = 0;
const CREATE_TOPICS: i16 = 19;
/// Kafka's `TOPIC_AUTHORIZATION_FAILED`.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

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
    /// Answer every CreateTopics request with `TOPIC_AUTHORIZATION_FAILED` for each topic, as a
    /// cluster that denies CREATE to these credentials; forward everything else.
    DenyCreateTopics,
}

impl Fault {
    /// Whether connections are cut (and new ones turned away).
    fn cuts(self) -> bool {
        matches!(self, Fault::Refuse | Fault::Reset)
    }
}

/// A broker behind a proxy. Dropping it stops both.
pub struct ProxiedBroker {
    #[allow(
        dead_code,
        reason = "signalled by the fault suite only; owned here either way"
    )]
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
        // Shared by the broker's responses and the proxy's own, one whole frame at a time.
        let to_client = tokio::sync::Mutex::new(to_client);
        let (from_broker, to_broker) = broker.split();
        let requests = forward_requests(&mut from_client, to_broker, &to_client, fault.clone());
        let responses = forward_responses(from_broker, &to_client, fault.clone());
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

/// Copies the broker's responses to the client frame by frame, holding them while stalled.
async fn forward_responses(
    mut from: impl AsyncRead + Unpin,
    to: &tokio::sync::Mutex<impl AsyncWrite + Unpin>,
    mut fault: watch::Receiver<Fault>,
) -> io::Result<()> {
    loop {
        let mut length = [0u8; 4];
        from.read_exact(&mut length).await?;
        let mut response = vec![0u8; u32::from_be_bytes(length) as usize];
        from.read_exact(&mut response).await?;
        unstalled(&mut fault).await;
        let mut to = to.lock().await;
        to.write_all(&length).await?;
        to.write_all(&response).await?;
    }
}

/// The response a cluster denying CREATE gives to a CreateTopics request (versions 0 to 4,
/// the ones librdkafka sends): every topic it names, `TOPIC_AUTHORIZATION_FAILED`. `None`
/// when the request cannot be read.
fn create_topics_denied(request: &[u8]) -> Option<Vec<u8>> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
            self.0 = rest;
            Some(head)
        }
        fn i16(&mut self) -> Option<i16> {
            self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
        }
        fn i32(&mut self) -> Option<i32> {
            self.take(4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn string(&mut self) -> Option<Option<&[u8]>> {
            let len = self.i16()?;
            if len < 0 {
                return Some(None);
            }
            self.take(len as usize).map(Some)
        }
    }
    let mut r = Reader(request);
    let (_api_key, version, correlation_id) = (r.i16()?, r.i16()?, r.i32()?);
    if version > 4 {
        return None;
    }
    let _client_id = r.string()?;
    let mut names = Vec::new();
    for _ in 0..r.i32()? {
        names.push(r.string()??.to_vec());
        let (_partitions, _replication) = (r.i32()?, r.i16()?);
        for _ in 0..r.i32()?.max(0) {
            let _partition = r.i32()?;
            for _ in 0..r.i32()?.max(0) {
                r.i32()?;
            }
        }
        for _ in 0..r.i32()?.max(0) {
            r.string()?;
            r.string()?;
        }
    }
    let mut response = correlation_id.to_be_bytes().to_vec();
    if version >= 2 {
        response.extend(0i32.to_be_bytes()); // throttle_time_ms
    }
    response.extend((names.len() as i32).to_be_bytes());
    let message = b"Authorization failed.";
    for name in names {
        response.extend((name.len() as i16).to_be_bytes());
        response.extend(name);
        response.extend(TOPIC_AUTHORIZATION_FAILED.to_be_bytes());
        if version >= 1 {
            response.extend((message.len() as i16).to_be_bytes());
            response.extend(message);
        }
    }
    let mut frame = (response.len() as u32).to_be_bytes().to_vec();
    frame.extend(response);
    Some(frame)
}

async fn forward_requests(
    from: &mut (impl AsyncRead + Unpin),
    mut to: impl AsyncWrite + Unpin,
    to_client: &tokio::sync::Mutex<impl AsyncWrite + Unpin>,
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
                Fault::None
                | Fault::Refuse
                | Fault::Stall
                | Fault::Reset
                | Fault::DenyCreateTopics => {}
            }
        }
        if api_key == CREATE_TOPICS && *fault.borrow() == Fault::DenyCreateTopics {
            if let Some(denied) = create_topics_denied(&request) {
                to_client.lock().await.write_all(&denied).await?;
                continue;
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
