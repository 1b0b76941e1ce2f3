//! A raw wasi:sockets TCP connect, to test the host's socket address check.

use std::net::SocketAddr;

use wasi::clocks::monotonic_clock;
use wasi::io::poll;
use wasi::sockets::instance_network::instance_network;
use wasi::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasi::sockets::tcp_create_socket::create_tcp_socket;

/// How long to wait for a connect before giving up, so a silently dropped SYN does not
/// hold the request until the host's own deadline.
const CONNECT_TIMEOUT_NANOS: u64 = 10_000_000_000;

/// The result of [`try_connect`].
#[derive(Debug, Clone)]
pub enum ConnectOutcome {
    /// The handshake completed; the connection was closed right away.
    Connected,
    /// The host or the network refused.
    Failed(ErrorCode),
}

/// Opens a TCP connection to `address` and closes it again.
///
/// The steps are the ones wasi:sockets prescribes: instance network, create socket,
/// start connect, wait on the socket's pollable, finish connect. A wait that outlasts
/// [`CONNECT_TIMEOUT_NANOS`] is reported as `ErrorCode::Timeout`.
pub fn try_connect(address: SocketAddr) -> ConnectOutcome {
    match connect(address) {
        Ok(()) => ConnectOutcome::Connected,
        Err(code) => ConnectOutcome::Failed(code),
    }
}

fn connect(address: SocketAddr) -> Result<(), ErrorCode> {
    let network = instance_network();
    let (family, remote) = to_wasi(address);
    let socket = create_tcp_socket(family)?;
    socket.start_connect(&network, remote)?;
    let ready = socket.subscribe();
    let deadline = monotonic_clock::subscribe_duration(CONNECT_TIMEOUT_NANOS);
    loop {
        match socket.finish_connect() {
            // The streams are children of the socket and are dropped here, before it.
            Ok((_input, _output)) => return Ok(()),
            Err(ErrorCode::WouldBlock) => {
                let woken = poll::poll(&[&ready, &deadline]);
                if !woken.contains(&0) {
                    return Err(ErrorCode::Timeout);
                }
            }
            Err(code) => return Err(code),
        }
    }
}

fn to_wasi(address: SocketAddr) -> (IpAddressFamily, IpSocketAddress) {
    match address {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: v4.port(),
                address: (a, b, c, d),
            });
            (IpAddressFamily::Ipv4, remote)
        }
        SocketAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.ip().segments();
            let remote = IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: v6.port(),
                flow_info: v6.flowinfo(),
                address: (a, b, c, d, e, f, g, h),
                scope_id: v6.scope_id(),
            });
            (IpAddressFamily::Ipv6, remote)
        }
    }
}
