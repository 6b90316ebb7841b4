//! The discovery server (libp2p rendezvous) that members register with and look each other up
//! in; it relays only signed peer records, never data.

use super::*;

/// Runs a discovery server (libp2p rendezvous) until the future is dropped. Members register
/// their addresses under their network's namespace and look each other up; the server relays
/// only signed peer records, never data. `ready` receives the addresses it listens on.
pub async fn run_discovery_server(
    keypair: identity::Keypair,
    listen: Vec<Multiaddr>,
    ready: mpsc::Sender<Multiaddr>,
) -> Result<(), NetError> {
    let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport(&e))?
        .with_quic()
        .with_behaviour(|_| DiscoveryBehaviour {
            rendezvous: rendezvous::server::Behaviour::new(rendezvous::server::Config::default()),
            ping: ping::Behaviour::default(),
        })
        .map_err(|e| transport(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for address in listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| NetError::Listen {
                address,
                error: describe(&e),
            })?;
    }
    let me = *swarm.local_peer_id();
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                let _ = ready
                    .send(address.with(libp2p::multiaddr::Protocol::P2p(me)))
                    .await;
            }
            SwarmEvent::Behaviour(DiscoveryBehaviourEvent::Rendezvous(event)) => {
                tracing::debug!(?event, "discovery");
            }
            _ => {}
        }
    }
}

#[derive(NetworkBehaviour)]
struct DiscoveryBehaviour {
    rendezvous: rendezvous::server::Behaviour,
    ping: ping::Behaviour,
}
