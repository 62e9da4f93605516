//! A local table's Parquet files read through memory maps.
//!
//! `object_store`'s local file system answers every range the Parquet reader asks for with a
//! new buffer: zeroed, then filled by `pread` from the page cache. On a KPI over a million
//! stays that was a tenth of the query's CPU (the zeroing, the kernel's copy and the
//! allocation). A data file mapped once serves its ranges as slices of the mapping: no copy, and
//! after the first query no page fault either, since the mapping lives as long as the table
//! version that lists the file (and the next version keeps the maps of the files it still lists).
//!
//! The Parquet reader fetches column chunks with `get_ranges`, which the maps answer; everything
//! else — footers (read once, then cached by the session), listing, writes — goes to the table's
//! own store.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use futures::stream::BoxStream;
use url::Url;

const STORE: &str = "MappedFiles";

/// An [`ObjectStore`] over a local table root that answers `get_ranges` from memory maps.
#[derive(Debug)]
pub(crate) struct MappedFiles {
    /// The table's store, for everything but `get_ranges`.
    inner: Arc<dyn ObjectStore>,
    /// The table root, a `file://` URL.
    root: Url,
    /// Each file read so far, mapped whole.
    maps: Mutex<HashMap<Path, Bytes>>,
}

impl MappedFiles {
    /// `get_ranges` of the files under `root` (a `file://` URL) from maps; the rest through
    /// `inner`. The maps of `previous` for the files in `keep` are taken over.
    pub(crate) fn new(
        inner: Arc<dyn ObjectStore>,
        root: Url,
        previous: Option<&MappedFiles>,
        keep: impl Fn(&Path) -> bool,
    ) -> Self {
        let maps = previous
            .and_then(|p| p.maps.lock().ok())
            .map(|maps| {
                maps.iter()
                    .filter(|(path, _)| keep(path))
                    .map(|(path, bytes)| (path.clone(), bytes.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            inner,
            root,
            maps: Mutex::new(maps),
        }
    }

    /// The whole of `location`, mapped on first use.
    fn mapped(&self, location: &Path) -> object_store::Result<Bytes> {
        let mut maps = self
            .maps
            .lock()
            .map_err(|_| generic("a map lock is poisoned"))?;
        if let Some(bytes) = maps.get(location) {
            return Ok(bytes.clone());
        }
        let mut url = self.root.clone();
        url.path_segments_mut()
            .map_err(|()| generic(format!("{} is not a file path", self.root)))?
            .pop_if_empty()
            .extend(location.parts());
        let path = url
            .to_file_path()
            .map_err(|()| generic(format!("{url} is not a file path")))?;
        let file = File::open(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                path: path.display().to_string(),
                source: Box::new(source),
            },
            _ => generic(format!("cannot open {}: {source}", path.display())),
        })?;
        // SAFETY: the mapping is undefined behaviour only if the file changes while mapped.
        // Delta never changes a data file: it writes a new file under a new name and removes old
        // ones (a removed file stays readable through its map until the map is dropped).
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| generic(format!("cannot map {}: {e}", path.display())))?;
        let bytes = Bytes::from_owner(map);
        maps.insert(location.clone(), bytes.clone());
        Ok(bytes)
    }

    /// `range` of `location`, or an error naming both when the file is shorter.
    fn slice(&self, location: &Path, range: Range<u64>) -> object_store::Result<Bytes> {
        let bytes = self.mapped(location)?;
        let len = bytes.len() as u64;
        if range.start > range.end || range.end > len {
            return Err(generic(format!(
                "range {range:?} is outside {location} ({len} bytes)"
            )));
        }
        // Within a map of `len` bytes, so the offsets fit in usize.
        Ok(bytes.slice(range.start as usize..range.end as usize))
    }
}

fn generic(message: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into().into(),
    }
}

impl fmt::Display for MappedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE}({})", self.root)
    }
}

#[async_trait]
impl ObjectStore for MappedFiles {
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        ranges
            .iter()
            .map(|range| self.slice(location, range.clone()))
            .collect()
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
// `get_ranges` takes a list of ranges; a list of one is what these tests mean.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use deltalake::logstore::object_store::local::LocalFileSystem;

    use super::*;

    /// The files under `dir`, mapped, taking over `previous`'s maps of the files in `keep`.
    fn mapped(
        dir: &std::path::Path,
        previous: Option<&MappedFiles>,
        keep: impl Fn(&Path) -> bool,
    ) -> MappedFiles {
        let inner = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
        let root = Url::from_directory_path(dir).unwrap();
        MappedFiles::new(inner, root, previous, keep)
    }

    #[tokio::test]
    async fn ranges_are_slices_of_the_mapped_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("department=Emergency Dept");
        std::fs::create_dir(&folder).unwrap();
        let data: Vec<u8> = (0..=255).collect();
        std::fs::write(folder.join("part-0.parquet"), &data).unwrap();
        let file = Path::from_iter(["department=Emergency Dept", "part-0.parquet"]);

        let files = mapped(dir.path(), None, |_| true);
        let ranges = files.get_ranges(&file, &[0..3, 254..256]).await.unwrap();
        assert_eq!(ranges, [&[0u8, 1, 2][..], &[254, 255][..]]);
        // The table's own store reads the same bytes.
        assert_eq!(
            files.inner.get_ranges(&file, &[254..256]).await.unwrap(),
            [&[254u8, 255][..]]
        );

        // Delta removes a file no version lists any more (vacuum): a map still reads it.
        std::fs::remove_file(folder.join("part-0.parquet")).unwrap();
        assert_eq!(
            files.get_ranges(&file, &[10..12]).await.unwrap(),
            [&[10u8, 11][..]]
        );

        let past_the_end = files.get_ranges(&file, &[250..300]).await.unwrap_err();
        let message = past_the_end.to_string();
        assert!(message.contains("part-0.parquet (256 bytes)"), "{message}");
        let missing = files
            .get_ranges(&Path::from("part-9.parquet"), &[0..1])
            .await
            .unwrap_err();
        assert!(
            matches!(missing, object_store::Error::NotFound { .. }),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn the_next_version_keeps_the_maps_of_the_files_it_lists() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["kept.parquet", "dropped.parquet"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let (kept, dropped) = (Path::from("kept.parquet"), Path::from("dropped.parquet"));
        let first = mapped(dir.path(), None, |_| true);
        first.get_ranges(&kept, &[0..4]).await.unwrap();
        first.get_ranges(&dropped, &[0..4]).await.unwrap();
        for name in ["kept.parquet", "dropped.parquet"] {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }

        let next = mapped(dir.path(), Some(&first), |path| path == &kept);
        assert_eq!(
            next.get_ranges(&kept, &[0..4]).await.unwrap(),
            [&b"kept"[..]]
        );
        // Not listed by the next version: its map was not taken over, and the file is gone.
        assert!(next.get_ranges(&dropped, &[0..4]).await.is_err());
        assert_eq!(next.maps.lock().unwrap().len(), 1);
    }
}
