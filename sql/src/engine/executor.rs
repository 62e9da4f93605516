//! The runtime queries execute on, apart from the one that answers requests. DataFusion's
//! operators run long between yields; on the runtime that also serves HTTP and Flight SQL
//! they held its workers, and an answer the result cache had in memory waited seconds behind
//! scans (bench/load.sh: dashboard p99 2.9 s at 64 clients). Here the operating system shares
//! the cores between the two runtimes' threads, and the request side always has a thread
//! free. DataFusion's documentation recommends the same split (a CPU-bound runtime beside the
//! I/O one).

use std::future::Future;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// The query runtime; shut down in the background when the engine is dropped (dropping a
/// runtime may not block inside another).
#[derive(Debug)]
pub(super) struct Executor(Option<Runtime>);

impl Executor {
    /// A runtime of two workers per core (at least four: a query being cancelled may hold a
    /// worker until its operator next yields), its threads named `patientflow-query`.
    pub(super) fn new() -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = Builder::new_multi_thread()
            .worker_threads((2 * cores).max(4))
            .thread_name("patientflow-query")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the query runtime: {e}")))?;
        Ok(Self(Some(runtime)))
    }

    /// Runs `work` on the query runtime. The task is aborted when the returned handle is
    /// dropped (the request went away, or its time limit passed).
    pub(super) fn spawn<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<Running<T>> {
        let runtime = self
            .0
            .as_ref()
            .ok_or_else(|| Error::Internal("the query runtime has stopped".into()))?;
        Ok(Running(runtime.spawn(work)))
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A query executing on the query runtime.
#[derive(Debug)]
pub(super) struct Running<T>(JoinHandle<Result<T>>);

impl<T> Running<T> {
    /// Its outcome.
    pub(super) async fn outcome(&mut self) -> Result<T> {
        match (&mut self.0).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => Err(Error::Internal(format!("the query panicked: {e}"))),
            Err(e) => Err(Error::Internal(format!("the query was stopped: {e}"))),
        }
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
