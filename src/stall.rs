//! A connection that moves no byte for a while is failed.
//!
//! hyper 1 bounds the time to send request headers, but not the time a
//! response takes to leave: a client that sends its request and never reads
//! the answer (or reads a byte now and then, which TCP's window rules turn
//! into no progress at all) would hold a connection slot forever. This IO
//! wrapper fails any read or write that has waited `timeout` since the
//! connection last moved a byte, in either direction.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct StallGuard<I> {
    inner: I,
    timeout: Duration,
    last_progress: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl<I> StallGuard<I> {
    pub fn new(inner: I, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            last_progress: now,
            deadline: Box::pin(tokio::time::sleep_until(
                now.checked_add(timeout).unwrap_or(now),
            )),
        }
    }

    /// Called when the inner IO is not ready: an error once nothing has
    /// moved for `timeout`, else pending (with a wake-up at the deadline).
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        // A timeout too long for the clock never fires.
        let Some(at) = self.last_progress.checked_add(self.timeout) else {
            return Poll::Pending;
        };
        if self.deadline.deadline() != at {
            self.deadline.as_mut().reset(at);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no byte moved for {:?}", self.timeout),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for StallGuard<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for StallGuard<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_fails_the_write_after_the_timeout() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(ours, Duration::from_secs(5));
        let started = Instant::now();
        let err = guarded.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_keeps_reading_is_never_cut() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(ours, Duration::from_secs(5));
        // 64 bytes every 4 s: slow, but always inside the timeout.
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 64];
            while got < 1024 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                got += theirs.read(&mut buf).await.unwrap();
            }
            got
        });
        guarded.write_all(&[0u8; 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_fails_the_read_after_the_timeout() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(ours, Duration::from_secs(3));
        let err = guarded.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
