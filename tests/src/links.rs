//! [`Link`]: a TCP relay on loopback between a node of a [`TestCluster`](crate::TestCluster) and
//! the others, which a test can cut (a partition) or slow (added delay), both ways at once.
//!
//! With `ClusterOptions::links`, each chunkserver reaches the master through a link of its own
//! (`to_master`), and everyone reaches the chunkserver (clients, other chunkservers' forwarded
//! writes, the master's own calls) through another (`inbound`, its advertised address). Cutting
//! `to_master` alone cuts its hellos and heartbeats (the master declares it dead) while clients
//! still reach it; cutting both cuts it off.
//!
//! Invariants: a cut link holds every byte (of connections open or opened during the cut)
//! instead of dropping connections, as a real partition does: the peers see silence and their
//! own timeouts, never a reset; healing lets the held bytes through, as TCP's retransmissions
//! would. A delay is added before each piece of data forwarded, in each direction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a [`Link`] does with the bytes it relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Open,
    /// Nothing passes (held until the link is open again).
    Cut,
    /// Every piece of data waits this long first.
    Delayed(Duration),
}

struct Shared {
    state: watch::Sender<LinkState>,
    target: watch::Sender<Option<SocketAddr>>,
    /// What passed, for tests of what is on the wire ([`Link::captured`]).
    capture: std::sync::Mutex<Captured>,
}

/// The bytes a link relayed (both directions, the first [`CAPTURE_LIMIT`]), and the first byte
/// each direction of each connection began with.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub first_bytes: Vec<u8>,
}

/// Bytes a link keeps of what it relayed.
const CAPTURE_LIMIT: usize = 64 << 20;

/// A relay to one node; see the module docs. Dropping it stops relaying.
pub struct Link {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// A link listening on loopback, relaying to `target` once it is set.
    pub async fn start(target: Option<SocketAddr>) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a link");
        let addr = listener.local_addr().expect("the link's address");
        let shared = Arc::new(Shared {
            state: watch::channel(LinkState::Open).0,
            target: watch::channel(target).0,
            capture: Default::default(),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Link { addr, shared, task }
    }

    /// Where peers connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Relays new connections to `target` (a restarted node's new port).
    pub fn set_target(&self, target: SocketAddr) {
        self.shared.target.send_replace(Some(target));
    }

    pub fn set(&self, state: LinkState) {
        self.shared.state.send_replace(state);
    }

    pub fn state(&self) -> LinkState {
        *self.shared.state.borrow()
    }

    /// What the link has relayed so far.
    pub fn captured(&self) -> Captured {
        self.shared.capture.lock().expect("capture lock").clone()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut relays = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((peer, _)) = accepted else { continue };
                relays.spawn(relay(peer, shared.clone()));
            }
            Some(_) = relays.join_next(), if !relays.is_empty() => {}
        }
    }
}

/// Relays one connection both ways until either side closes.
async fn relay(peer: TcpStream, shared: Arc<Shared>) {
    let mut target = shared.target.subscribe();
    let Ok(addr) = target
        .wait_for(Option::is_some)
        .await
        .map(|t| t.expect("set"))
    else {
        return;
    };
    // A connection opened during a cut waits, as a SYN into a partition would.
    if wait_open(&shared).await.is_none() {
        return;
    }
    let Ok(node) = TcpStream::connect(addr).await else {
        return;
    };
    let _ = peer.set_nodelay(true);
    let _ = node.set_nodelay(true);
    let (peer_in, peer_out) = peer.into_split();
    let (node_in, node_out) = node.into_split();
    let up = tokio::spawn(pump(peer_in, node_out, shared.clone()));
    let down = tokio::spawn(pump(node_in, peer_out, shared));
    let _ = tokio::join!(up, down);
}

/// Waits while the link is cut; its delay, if any.
async fn wait_open(shared: &Shared) -> Option<Duration> {
    let mut state = shared.state.subscribe();
    let state = state.wait_for(|s| *s != LinkState::Cut).await.ok()?;
    Some(match *state {
        LinkState::Delayed(d) => d,
        _ => Duration::ZERO,
    })
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut first = true;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut capture = shared.capture.lock().expect("capture lock");
            if std::mem::take(&mut first) {
                capture.first_bytes.push(buf[0]);
            }
            let room = CAPTURE_LIMIT.saturating_sub(capture.bytes.len());
            capture.bytes.extend_from_slice(&buf[..n.min(room)]);
        }
        let Some(delay) = wait_open(&shared).await else {
            break;
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, within: Duration) -> bool {
        s.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        matches!(
            tokio::time::timeout(within, s.read_exact(&mut back)).await,
            Ok(Ok(_))
        )
    }

    #[tokio::test]
    async fn a_cut_link_holds_bytes_until_healed_and_a_delay_delays() {
        let link = Link::start(Some(echo_server().await)).await;
        let mut s = TcpStream::connect(link.addr()).await.unwrap();
        assert!(round_trip(&mut s, Duration::from_secs(10)).await);
        link.set(LinkState::Cut);
        assert!(!round_trip(&mut s, Duration::from_millis(200)).await, "cut");
        link.set(LinkState::Open);
        let mut back = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"ping", "the held bytes pass once healed");
        link.set(LinkState::Delayed(Duration::from_millis(100)));
        let started = std::time::Instant::now();
        assert!(round_trip(&mut s, Duration::from_secs(10)).await);
        assert!(started.elapsed() >= Duration::from_millis(200), "both ways");
    }
}
