//! What the network tests share: loopback addresses and a raw request-response codec that lets a
//! test peer write any bytes as a request on any protocol.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use async_trait::async_trait;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{identity, noise, request_response, tcp, yamux, Multiaddr, StreamProtocol, Swarm};
use std::io;
use std::time::Duration;

/// Generous: the tests share a loaded 2-core machine with other builds.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// The loopback TCP address of `port`.
pub fn address(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}")
        .parse()
        .expect("valid multiaddr")
}

/// A bare libp2p peer with identity `key` that can send raw requests ([`RawCodec`]) on
/// `protocol` and serves nothing: a test's stand-in for a member or a stranger.
pub fn raw_swarm(
    key: identity::Keypair,
    protocol: StreamProtocol,
) -> Swarm<request_response::Behaviour<RawCodec>> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(protocol, request_response::ProtocolSupport::Outbound)],
                request_response::Config::default(),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

/// Writes a request's bytes exactly as given (no framing added) and reads a 4-byte answer (the
/// sync protocol's acknowledgement, or a peer list's length prefix).
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

#[async_trait]
impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("a raw test peer serves no requests"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut answer = [0u8; 4];
        io.read_exact(&mut answer).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&request).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: ()) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}
