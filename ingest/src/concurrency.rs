//! Fan-out: many reads of one kind, a few at a time — futures on the runtime ([`at_most`]), or
//! blocking reads on threads of their own ([`in_runs`]); a few jobs of work, each a task of its
//! own so that they use every core ([`on_tasks`]).

use std::future::Future;

use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};

/// Tables whose logs are read at once when many are opened (a gold refresh, the stream's
/// start-up check): a few, so that tokio's blocking pool does not grow in a burst.
pub(crate) const TABLES_OPENED_AT_ONCE: usize = 4;

/// Runs `futures` at most `limit` at a time and returns their results in order; the first error
/// ends it. Each local object-store read is a task on tokio's blocking pool, and a pool grown by
/// a burst of reads keeps its threads (and their allocator pages) while a stream runs.
///
/// Takes the futures collected: a stream over a lazy iterator's closures that borrow is not
/// provably `Send`.
pub(crate) async fn at_most<T, F>(limit: usize, futures: Vec<F>) -> Result<Vec<T>>
where
    F: Future<Output = Result<T>>,
{
    futures::stream::iter(futures)
        .buffered(limit)
        .try_collect()
        .await
}

/// `read` over `items` cut into at most `threads` runs of neighbours (none shorter than
/// `min_run`), each run on a thread of its own; the results in the order of `items`. For
/// blocking reads that wait on the disk (reads in flight together finish sooner); a single run
/// is read on the calling thread. A thread's panic is the caller's.
pub(crate) fn in_runs<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    min_run: usize,
    read: impl Fn(&[T]) -> Result<Vec<R>> + Sync,
) -> Result<Vec<R>> {
    let run = items.len().div_ceil(threads).max(min_run);
    if items.len() <= run {
        return read(items);
    }
    let read = &read;
    std::thread::scope(|scope| {
        let runs: Vec<_> = items
            .chunks(run)
            .map(|items| scope.spawn(move || read(items)))
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for handle in runs {
            let results = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            all.extend(results);
        }
        Ok(all)
    })
}

/// Runs each of `jobs` as a task of its own (futures joined in one task take turns on one
/// thread; tasks run on all of the runtime's) and returns their results in order once every
/// one has finished, the first error if any failed: no job is still running when this returns.
/// A job's panic is the caller's.
pub(crate) async fn on_tasks<T, F>(jobs: Vec<F>) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let handles: Vec<_> = jobs.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(result) => results.push(result),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => results.push(Err(Error::Internal(format!("a task was cancelled: {e}")))),
        }
    }
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_answer_in_order_and_all_finish_before_an_error_returns() {
        let jobs: Vec<_> = (0..4u64).map(|n| async move { Ok(n * 2) }).collect();
        assert_eq!(on_tasks(jobs).await.unwrap(), vec![0, 2, 4, 6]);

        let slow_done = Arc::new(AtomicBool::new(false));
        let done = slow_done.clone();
        let failing = Box::pin(async { Err::<(), _>(Error::Internal("broken".into())) })
            as std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>>;
        let slow = Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            done.store(true, Ordering::SeqCst);
            Ok(())
        });
        let err = on_tasks(vec![failing, slow]).await.unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
        assert!(
            slow_done.load(Ordering::SeqCst),
            "returned while a job still ran"
        );
    }

    #[test]
    fn runs_on_threads_answer_in_the_order_of_the_items() {
        let items: Vec<u64> = (0..10_000).collect();
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        let doubled = in_runs(&items, 8, 256, |run| {
            threads.lock().unwrap().insert(std::thread::current().id());
            Ok(run.iter().map(|n| n * 2).collect())
        })
        .unwrap();
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(threads.lock().unwrap().len(), 8);

        // A run no longer than the shortest is read on the calling thread.
        let caller = std::thread::current().id();
        let read = in_runs(&items[..256], 8, 256, |run| {
            assert_eq!(std::thread::current().id(), caller);
            Ok(run.to_vec())
        });
        assert_eq!(read.unwrap(), items[..256]);

        // A failing run fails the whole.
        let failed = in_runs(&items, 8, 256, |run| {
            if run.contains(&9_999) {
                Err(Error::Internal("broken".into()))
            } else {
                Ok(vec![(); run.len()])
            }
        });
        assert!(failed.is_err());
    }
}
