//! Bounded fan-out: many reads of one kind, a few at a time.

use std::future::Future;

use futures::{StreamExt, TryStreamExt};

use crate::error::Result;

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
