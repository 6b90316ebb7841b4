//! The sync protocol's framing on a libp2p stream: one length-prefixed batch per request, an
//! empty acknowledgement as the response. A request that breaks the framing is still handed to
//! the network task (as [`SyncRequest::Malformed`]) so it can blame the sender.

use crate::frame::{Batch, FrameError, MAX_BATCH_BYTES};
use async_trait::async_trait;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};
use std::io;

/// Initial buffer for a received frame; it grows as bytes actually arrive, so an announced length
/// alone does not make us allocate.
const READ_CHUNK: usize = 64 * 1024;

/// Reads a frame's length prefix.
pub async fn read_len<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    Ok(usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX))
}

/// Reads exactly `len` bytes, allocating only as they arrive. A stream that ends early is an
/// error but not proof of a fault: a connection that dies mid-request looks the same.
pub async fn read_body<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    len: usize,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(len.min(READ_CHUNK));
    io.take(u64::try_from(len).unwrap_or(u64::MAX))
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {} of {len} bytes", body.len()),
        ));
    }
    Ok(body)
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

/// A sync request. Outgoing ones are always batches; an incoming one that violates the framing
/// is still delivered to the network task (as `Malformed`) rather than failed in the codec,
/// because libp2p does not report a request whose reading failed, and the task must learn of it
/// to treat the sender as faulty.
#[derive(Debug)]
pub enum SyncRequest {
    /// A well-formed batch of messages.
    Batch(Batch),
    /// What the peer sent is not a well-formed batch.
    Malformed(FrameError),
}

/// The request-response codec: a request is one length-prefixed frame holding a batch (`frame`),
/// bounded by [`MAX_BATCH_BYTES`]; the response is an empty frame, the acknowledgement that
/// releases the link's next batch.
#[derive(Clone, Copy, Default)]
pub struct SyncCodec;

#[async_trait]
impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let len = read_len(io).await?;
        if len > MAX_BATCH_BYTES {
            return Ok(SyncRequest::Malformed(FrameError::Oversized { len }));
        }
        let body = read_body(io, len).await?;
        Ok(match Batch::decode(body) {
            Ok(batch) => SyncRequest::Batch(batch),
            Err(error) => SyncRequest::Malformed(error),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        match read_len(io).await? {
            0 => Ok(()),
            len => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("acknowledgement of {len} bytes, expected none"),
            )),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        match request {
            SyncRequest::Batch(batch) => write_frame(io, batch.body()).await,
            SyncRequest::Malformed(error) => {
                Err(io::Error::new(io::ErrorKind::InvalidInput, error))
            }
        }
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &[]).await
    }
}
