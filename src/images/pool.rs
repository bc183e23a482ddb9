//! A fixed set of worker threads for image work, with a bounded queue in front: the proxy's
//! threads only wait for a result; when the queue is full the caller is told at once (503).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::IntGauge;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the image workers are busy")]
    Busy,
    #[error("an image worker failed")]
    Failed,
}

pub struct WorkerPool {
    workers: usize,
    queue: usize,
    depth: IntGauge,
    /// Threads start on first use, inside the running server (after any daemonizing).
    sender: OnceLock<SyncSender<Job>>,
}

impl WorkerPool {
    pub fn new(workers: usize, queue: usize, depth: IntGauge) -> Self {
        Self {
            workers: workers.max(1),
            queue,
            depth,
            sender: OnceLock::new(),
        }
    }

    fn sender(&self) -> &SyncSender<Job> {
        self.sender.get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(self.queue);
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..self.workers {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("postern-image-{i}"))
                    .spawn(move || work(&rx));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start an image worker");
                }
            }
            tx
        })
    }

    /// Runs `job` on a worker; `Busy` when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        let depth = self.depth.clone();
        let wrapped: Job = Box::new(move || {
            depth.dec();
            let result = std::panic::catch_unwind(AssertUnwindSafe(job));
            let _ = tx.send(result.map_err(|_| PoolError::Failed));
        });
        self.depth.inc();
        match self.sender().try_send(wrapped) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.depth.dec();
                return Err(PoolError::Busy);
            }
        }
        rx.await.map_err(|_| PoolError::Failed)?
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_jobs_and_refuses_when_full() {
        let depth = IntGauge::new("t", "t").unwrap();
        let pool = Arc::new(WorkerPool::new(1, 1, depth.clone()));
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = hold.recv();
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 1).await })
        };
        while depth.get() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.run(|| 3).await, Err(PoolError::Busy));
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(()));
        assert_eq!(queued.await.unwrap(), Ok(1));
        assert_eq!(
            pool.run(|| panic!("boom")).await,
            Err::<(), _>(PoolError::Failed)
        );
        assert_eq!(pool.run(|| 5).await, Ok(5));
    }
}
