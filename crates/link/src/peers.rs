//! Peer exchange (`/beaufort/peers/1`): on connecting, a member asks the other for the addresses
//! it knows of every member, so a member configured without some addresses (or whose discovery
//! server is down) still finds the whole consortium through any member it reaches.
//!
//! Addresses are only hints: every dial authenticates the member's peer id, so a lying peer can
//! waste dial attempts but never impersonate anyone. Lists are bounded per member and overall, and
//! a malformed list marks its sender faulty.

use crate::codec::{read_body, read_len, write_frame};
use async_trait::async_trait;
use beaufort_core::types::MemberIndex;
use libp2p::{request_response, Multiaddr, StreamProtocol};
use std::io;

/// The peer-exchange protocol's name on the wire.
pub const PEERS_PROTOCOL: StreamProtocol = StreamProtocol::new("/beaufort/peers/1");

/// Largest peer list accepted or sent.
pub const MAX_PEER_LIST_BYTES: usize = 64 * 1024;

/// Most addresses shared per member.
pub const MAX_SHARED_ADDRESSES: usize = 4;

/// Longest single address accepted.
const MAX_ADDRESS_BYTES: usize = 256;

/// The addresses one member knows of the others: (member, addresses) entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerList(pub Vec<(MemberIndex, Vec<Multiaddr>)>);

impl PeerList {
    /// Encodes as `[member u16][count u8]([len u16][multiaddr bytes])*` per entry, keeping at most
    /// [`MAX_SHARED_ADDRESSES`] per member and stopping before [`MAX_PEER_LIST_BYTES`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (member, addresses) in &self.0 {
            let addresses: Vec<Vec<u8>> = addresses
                .iter()
                .map(|a| a.to_vec())
                .filter(|a| a.len() <= MAX_ADDRESS_BYTES)
                .take(MAX_SHARED_ADDRESSES)
                .collect();
            let entry_len = 3 + addresses.iter().map(|a| 2 + a.len()).sum::<usize>();
            if addresses.is_empty() || out.len() + entry_len > MAX_PEER_LIST_BYTES {
                continue;
            }
            out.extend_from_slice(&member.to_be_bytes());
            out.push(addresses.len() as u8);
            for address in addresses {
                out.extend_from_slice(&(address.len() as u16).to_be_bytes());
                out.extend_from_slice(&address);
            }
        }
        out
    }

    /// Decodes a list from a peer of a consortium of `members`; any violation of the format or
    /// its bounds is an error.
    pub fn decode(bytes: &[u8], members: usize) -> Result<PeerList, String> {
        if bytes.len() > MAX_PEER_LIST_BYTES {
            return Err(format!("peer list of {} bytes", bytes.len()));
        }
        let mut cursor = Cursor(bytes);
        let mut entries = Vec::new();
        while !cursor.0.is_empty() {
            let head = cursor.take(2)?;
            let member = u16::from_be_bytes([head[0], head[1]]);
            if usize::from(member) >= members {
                return Err(format!("peer list names member {member} of {members}"));
            }
            let count = usize::from(cursor.take(1)?[0]);
            if count == 0 || count > MAX_SHARED_ADDRESSES {
                return Err(format!("{count} addresses for one member"));
            }
            let mut addresses = Vec::with_capacity(count);
            for _ in 0..count {
                let len = cursor.take(2)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len > MAX_ADDRESS_BYTES {
                    return Err(format!("address of {len} bytes"));
                }
                let address = Multiaddr::try_from(cursor.take(len)?.to_vec())
                    .map_err(|e| format!("not an address: {e}"))?;
                addresses.push(address);
            }
            entries.push((member, addresses));
        }
        Ok(PeerList(entries))
    }
}

/// Reads a byte string front to back.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("peer list cut short".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
}

/// Request: an empty frame ("your list, please"); response: one frame holding an encoded
/// [`PeerList`], decoded by the network task (which knows the consortium's size).
#[derive(Clone, Copy, Debug, Default)]
pub struct PeersCodec;

#[async_trait]
impl request_response::Codec for PeersCodec {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        match read_len(io).await? {
            0 => Ok(()),
            len => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("peer-list request of {len} bytes, expected none"),
            )),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let len = read_len(io).await?;
        if len > MAX_PEER_LIST_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("peer list of {len} bytes"),
            ));
        }
        read_body(io, len).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &[]).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        list: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &list).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}")
            .parse()
            .expect("address")
    }

    #[test]
    fn lists_round_trip_within_their_bounds() {
        let list = PeerList(vec![
            (0, vec![address(1)]),
            (3, (0..10).map(address).collect()),
        ]);
        let decoded = PeerList::decode(&list.encode(), 4).expect("decodes");
        assert_eq!(decoded.0[0], (0, vec![address(1)]));
        assert_eq!(
            decoded.0[1].1.len(),
            MAX_SHARED_ADDRESSES,
            "capped per member"
        );
        assert_eq!(PeerList::decode(&[], 4), Ok(PeerList::default()));
    }

    #[test]
    fn hostile_lists_are_refused() {
        let good = PeerList(vec![(1, vec![address(9)])]).encode();
        assert!(PeerList::decode(&good, 1).is_err(), "member out of range");
        assert!(
            PeerList::decode(&good[..good.len() - 1], 4).is_err(),
            "cut short"
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(PeerList::decode(&trailing, 4).is_err(), "trailing byte");
        let mut zero = good.clone();
        zero[2] = 0;
        assert!(PeerList::decode(&zero, 4).is_err(), "no addresses");
        let mut garbage = good.clone();
        let last = garbage.len() - 1;
        garbage[5] = 0xff;
        garbage[last] = 0xff;
        assert!(PeerList::decode(&garbage, 4).is_err(), "not a multiaddr");
        let mut seeded = 7u64;
        for _ in 0..5000 {
            let len = (seeded % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seeded = seeded.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seeded >> 33) as u8
                })
                .collect();
            let _ = PeerList::decode(&bytes, 8);
        }
    }
}
