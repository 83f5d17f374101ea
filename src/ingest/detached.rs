//! A write that outlives its request without a task of its own.
//!
//! A webhook's write must run to its end even if the client disconnects: it holds the dedupe
//! claim, so a retry waits for its outcome instead of producing a second copy. Spawning every
//! write as a task of its own guarantees that, but costs a task, a join handle and a second
//! wake-up per webhook. [`Detached`] runs the write inside the request instead, and only if the
//! request is dropped before the write finished does it hand the rest of the write to a task.

use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

type Write<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Polls `write` in place; dropped unfinished, spawns what is left of it.
pub(super) struct Detached<T: Send + 'static> {
    write: Option<Write<T>>,
}

/// The write panicked (a bug): answered as a failed write, never taking the worker down.
#[derive(Debug)]
pub(super) struct Panicked;

impl<T: Send + 'static> Detached<T> {
    pub(super) fn new(write: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            write: Some(Box::pin(write)),
        }
    }
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = Result<T, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(write) = self.write.as_mut() else {
            return Poll::Ready(Err(Panicked));
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| write.poll_unpin(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(done)) => {
                self.write = None;
                Poll::Ready(Ok(done))
            }
            Err(_) => {
                self.write = None;
                Poll::Ready(Err(Panicked))
            }
        }
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some(write) = self.write.take() {
            // Outside a runtime (it is shutting down) there is nothing left to run it on.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(AssertUnwindSafe(write).catch_unwind());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_whose_request_is_dropped_runs_to_its_end() {
        let finished = Arc::new(AtomicBool::new(false));
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let write = {
            let finished = finished.clone();
            Detached::new(async move {
                let _ = wait.await;
                finished.store(true, Ordering::SeqCst);
            })
        };
        let request = tokio::spawn(write);
        tokio::time::sleep(Duration::from_millis(10)).await;
        request.abort();
        let _ = request.await;
        assert!(!finished.load(Ordering::SeqCst));
        go.send(()).expect("the write still waits");
        tokio::time::timeout(Duration::from_secs(5), async {
            while !finished.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the write finished after its request was gone");
    }

    #[tokio::test]
    async fn a_write_runs_in_place_and_a_panic_is_an_error() {
        assert_eq!(Detached::new(async { 7 }).await.ok(), Some(7));
        let panicking = Detached::new(async {
            if std::hint::black_box(true) {
                panic!("a bug");
            }
        });
        assert!(panicking.await.is_err());
    }
}
