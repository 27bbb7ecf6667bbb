//! [`Wal`]: buffering, writing, rotating and truncating one log group's log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::FileSystem;

use super::prealloc::{idle_extension, zeroed_end};
use super::record::encode;
use super::recovery::{Segment, recover};
use super::segment::{HEADER_LEN, SegmentFile, file_name, header};
use super::sync::{DirSync, PendingSync, Shared};
use super::{Lsn, WalError};
use crate::LogRecord;

/// Tuning for a [`Wal`].
///
/// # Examples
///
/// ```
/// use statefn_store::WalOptions;
///
/// let small = WalOptions { segment_bytes: 1 << 20, ..WalOptions::default() };
/// assert_eq!(WalOptions::default().segment_bytes, 64 << 20);
/// assert_eq!(small.preallocate_bytes, 4 << 20);
/// // Every write grows the file, as before preallocation.
/// let growing = WalOptions { preallocate_bytes: 0, ..WalOptions::default() };
/// # let _ = growing;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment is closed and a new one started when the next record would
    /// make it larger than this. Smaller segments let truncation free space
    /// sooner; larger ones mean fewer files. A record larger than this gets a
    /// segment of its own. Default: 64 MiB.
    pub segment_bytes: u64,
    /// The largest chunk of zeros written ahead of the writer in the active
    /// segment, so that a commit's `fdatasync` overwrites in place and
    /// changes no file size (faster: no metadata to journal). Chunks start
    /// at 64 KiB and double with the segment up to this; never past
    /// [`segment_bytes`](Self::segment_bytes). 0 turns preallocation off:
    /// every write then grows the file. Default: 4 MiB.
    pub preallocate_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            preallocate_bytes: 4 << 20,
        }
    }
}

/// The write-ahead log of one log group: a directory of segment files.
///
/// Writing is split in three steps so the caller can group-commit and
/// pipeline: [`Wal::append`] buffers records in memory, [`Wal::write`] hands
/// them to the OS, and the returned [`PendingSync`] makes them durable,
/// possibly on another thread while the next batch is appended.
///
/// # Durability
///
/// A record is durable only once a [`PendingSync`] whose
/// [`up_to`](PendingSync::up_to) covers it has been synced. After any failed
/// write or sync the log is *poisoned* and refuses further writes
/// ([`WalError::Poisoned`]); reopening recovers every record that was synced.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use statefn_store::{LogRecord, Lsn, StdFs, Wal, WalOptions};
///
/// let dir = tempfile::tempdir()?;
/// let fs = Arc::new(StdFs);
/// let (mut wal, recovered) = Wal::open(fs.clone(), dir.path(), WalOptions::default(), Lsn(1))?;
/// assert!(recovered.is_empty());
///
/// assert_eq!(wal.append(b"first"), Lsn(1));
/// assert_eq!(wal.append(b"second"), Lsn(2));
/// let durable = wal.write()?.sync()?;
/// assert_eq!(durable, Lsn(2));
/// drop(wal);
///
/// // Replay from after a checkpoint that covered lsn 1.
/// let (_wal, records) = Wal::open(fs, dir.path(), WalOptions::default(), Lsn(2))?;
/// assert_eq!(records, vec![LogRecord { lsn: Lsn(2), payload: b"second".to_vec() }]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    opts: WalOptions,
    /// Oldest first; never empty; the last one is the active segment.
    segments: Vec<Segment>,
    /// Framed records appended but not yet written.
    buffer: Vec<u8>,
    /// End offset in `buffer` of each buffered record, in LSN order.
    buffered_ends: Vec<usize>,
    /// LSN the next appended record gets.
    next_lsn: Lsn,
    /// Highest LSN handed to the OS (0 = none).
    written: Lsn,
    /// Number of segments created by this writer; the directory must be
    /// synced up to this generation for the creations to be durable.
    dir_generation: u64,
    shared: Arc<Shared>,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, validates every segment and
    /// truncates a torn tail: an incomplete or checksum-failing last record
    /// of the last segment, or zero bytes at its end. Each truncation is
    /// logged with `tracing::warn!` naming the file, the offset and the bytes
    /// dropped.
    ///
    /// Returns the log and the records with `lsn >= from`, in order. Pass the
    /// checkpoint position + 1; a new log starts at `from` (or 1).
    ///
    /// # Durability
    ///
    /// Every returned record is durable when this returns (recovery syncs
    /// what a crashed process may have left in the page cache).
    ///
    /// # Errors
    ///
    /// - [`WalError::Corrupt`] for damage that cannot be a torn tail: a
    ///   checksum failure with valid data after it, damage in a segment that
    ///   is not the last, a missing segment, or no records from `from` on.
    /// - [`WalError::UnsupportedVersion`] for a segment of a newer format.
    /// - [`WalError::Io`] if the file system fails.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        opts: WalOptions,
        from: Lsn,
    ) -> Result<(Wal, Vec<LogRecord>), WalError> {
        Self::open_at(fs, dir, opts, from, None)
    }

    /// Reopens the log after this process's writer failed (a write or a
    /// sync), as [`open`](Self::open), but first drops every record after
    /// `durable`, the last position a sync made durable: the records written
    /// after it may sit whole in the page cache (a failed `fdatasync`, the
    /// first records of a short write), yet their callers were told they
    /// were not committed, and the disk may never have had them (after a
    /// failed `fdatasync` the kernel may mark their pages clean unwritten).
    ///
    /// # Durability
    ///
    /// As [`open`](Self::open); the cut is durable when this returns.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use statefn_store::{Lsn, StdFs, Wal, WalOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (mut wal, _) = Wal::open(Arc::new(StdFs), dir.path(), WalOptions::default(), Lsn(1))?;
    /// wal.append(b"synced");
    /// let durable = wal.write()?.sync()?;
    /// wal.append(b"written, never synced");
    /// let _unsynced = wal.write()?;
    /// drop(wal);
    ///
    /// let (_, records) =
    ///     Wal::reopen_after_failure(Arc::new(StdFs), dir.path(), WalOptions::default(), Lsn(1), durable)?;
    /// assert_eq!(records.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reopen_after_failure(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        opts: WalOptions,
        from: Lsn,
        durable: Lsn,
    ) -> Result<(Wal, Vec<LogRecord>), WalError> {
        Self::open_at(fs, dir, opts, from, Some(durable))
    }

    fn open_at(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        opts: WalOptions,
        from: Lsn,
        cut: Option<Lsn>,
    ) -> Result<(Wal, Vec<LogRecord>), WalError> {
        let recovered = recover(fs.as_ref(), dir, from, cut)?;
        let wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            opts,
            segments: recovered.segments,
            buffer: Vec::new(),
            buffered_ends: Vec::new(),
            next_lsn: recovered.next,
            written: Lsn(recovered.next.0 - 1),
            dir_generation: 0,
            shared: Arc::default(),
        };
        Ok((wal, recovered.records))
    }

    /// Buffers one record in memory and returns its LSN. Nothing touches the
    /// file until [`Wal::write`].
    ///
    /// # Durability
    ///
    /// None: the record is lost if the process stops before it is written
    /// and synced. Do not acknowledge anything based on the returned LSN yet.
    ///
    /// # Panics
    ///
    /// Panics if `payload` is 4 GiB or larger.
    pub fn append(&mut self, payload: &[u8]) -> Lsn {
        let lsn = self.next_lsn;
        encode(lsn, payload, &mut self.buffer);
        self.buffered_ends.push(self.buffer.len());
        self.next_lsn = lsn.next();
        lsn
    }

    /// Writes all buffered records to the segment files (one write per
    /// segment touched, starting a new segment when the active one would
    /// exceed [`WalOptions::segment_bytes`]) and returns the [`PendingSync`]
    /// that makes them durable. Does not fsync.
    ///
    /// With nothing buffered, the returned [`PendingSync`] still covers
    /// every record written so far.
    ///
    /// # Durability
    ///
    /// After this returns the records survive a crash of the process (they
    /// are in the OS page cache) but not of the machine; they are durable
    /// once the returned [`PendingSync`] is synced.
    ///
    /// # Errors
    ///
    /// [`WalError::Io`] if a write or a segment creation fails, which poisons
    /// the log (a partial write may be on disk); [`WalError::Poisoned`] if it
    /// already was. The buffered records are dropped either way.
    pub fn write(&mut self) -> Result<PendingSync, WalError> {
        if self.shared.is_poisoned() {
            self.buffer.clear();
            self.buffered_ends.clear();
            return Err(WalError::Poisoned);
        }
        if let Err(e) = self.write_buffered() {
            self.shared.poison();
            return Err(e);
        }
        Ok(self.pending())
    }

    fn write_buffered(&mut self) -> Result<(), WalError> {
        let buffer = std::mem::take(&mut self.buffer);
        let ends = std::mem::take(&mut self.buffered_ends);
        let mut chunk_start = 0;
        let mut record_start = 0;
        let mut chunk_last = None;
        for (lsn, end) in (self.written.0 + 1..).map(Lsn).zip(ends) {
            let active = self.active();
            let chunk_len = (record_start - chunk_start) as u64;
            let header_len = if active.needs_header { HEADER_LEN } else { 0 } as u64;
            let used = active.len + header_len + chunk_len;
            let has_records = active.last.is_some() || chunk_last.is_some();
            if has_records && used + (end - record_start) as u64 > self.opts.segment_bytes {
                self.write_chunk(buffer.get(chunk_start..record_start), chunk_last)?;
                self.rotate(lsn)?;
                chunk_start = record_start;
            }
            chunk_last = Some(lsn);
            record_start = end;
        }
        self.write_chunk(buffer.get(chunk_start..record_start), chunk_last)
    }

    /// Writes `chunk` (records up to `last`) at the end of the active
    /// segment's records, over the zeros written ahead when they reach that
    /// far; when they do not, writes the next chunk of zeros after them
    /// ([`prealloc`](super::prealloc)).
    #[expect(
        clippy::expect_used,
        reason = "invariant: a log always has an active segment, and it is open"
    )]
    fn write_chunk(&mut self, chunk: Option<&[u8]>, last: Option<Lsn>) -> Result<(), WalError> {
        let (Some(chunk), Some(last)) = (chunk, last) else {
            return Ok(());
        };
        let opts = self.opts;
        let active = self
            .segments
            .last_mut()
            .expect("a log always has a segment");
        let file = active.file.as_ref().expect("the active segment is open");
        if active.needs_header {
            let mut bytes = Vec::with_capacity(HEADER_LEN + chunk.len());
            bytes.extend_from_slice(&header(active.first));
            bytes.extend_from_slice(chunk);
            file.file
                .write_at(active.len, &bytes)
                .map_err(WalError::io(&active.path))?;
            active.len += bytes.len() as u64;
            active.needs_header = false;
        } else {
            file.file
                .write_at(active.len, chunk)
                .map_err(WalError::io(&active.path))?;
            active.len += chunk.len() as u64;
        }
        let zeroed = zeroed_end(
            active.allocated,
            active.len,
            opts.segment_bytes,
            opts.preallocate_bytes,
        );
        if zeroed > active.allocated.max(active.len) {
            file.file
                .zero_fill(active.len, zeroed)
                .map_err(WalError::io(&active.path))?;
        }
        active.allocated = zeroed;
        active.last = Some(last);
        self.written = last;
        Ok(())
    }

    /// Seals the active segment (cuts its zeros off, so that a sealed
    /// segment is as long as its records; the cut need not be durable:
    /// recovery accepts a zero tail on any segment) and starts a new active
    /// segment whose first record is `first`. Its header is written together
    /// with its first records.
    fn rotate(&mut self, first: Lsn) -> Result<(), WalError> {
        if let Some(sealed) = self.segments.last_mut()
            && sealed.allocated > sealed.len
            && let Some(file) = &sealed.file
        {
            file.file
                .truncate(sealed.len)
                .map_err(WalError::io(&sealed.path))?;
            sealed.allocated = sealed.len;
        }
        let path = self.dir.join(file_name(first));
        let file = self
            .fs
            .open_file(&path, true)
            .map_err(WalError::io(&path))?;
        self.segments.push(Segment {
            first,
            len: 0,
            allocated: 0,
            last: None,
            file: Some(Arc::new(SegmentFile::new(path.clone(), file, Lsn(0)))),
            path,
            needs_header: true,
        });
        self.dir_generation += 1;
        Ok(())
    }

    /// A sync covering every file that may hold unsynced records.
    fn pending(&mut self) -> PendingSync {
        let active_index = self.segments.len() - 1;
        let mut files = Vec::new();
        for (index, segment) in self.segments.iter_mut().enumerate() {
            let (Some(file), Some(last)) = (&segment.file, segment.last) else {
                continue;
            };
            if file.synced() < last {
                files.push((Arc::clone(file), last));
            } else if index != active_index {
                // Closed and durable: no need to keep the descriptor.
                segment.file = None;
            }
        }
        PendingSync {
            files,
            dir: (self.dir_generation > 0).then(|| DirSync {
                fs: Arc::clone(&self.fs),
                path: self.dir.clone(),
                generation: self.dir_generation,
            }),
            up_to: self.written,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Deletes the segments all of whose records are below `lsn`; call it
    /// after a checkpoint covering them. Never deletes the active segment.
    ///
    /// Segments are deleted oldest first, syncing the directory after each,
    /// so a crash in the middle never leaves a gap in the log.
    ///
    /// # Errors
    ///
    /// [`WalError::Io`] if a removal or directory sync fails (a failed sync
    /// also poisons the log; a failed removal leaves the segment in place,
    /// for the next call to remove); [`WalError::Poisoned`] if the log is
    /// poisoned.
    pub fn truncate_before(&mut self, lsn: Lsn) -> Result<(), WalError> {
        if self.shared.is_poisoned() {
            return Err(WalError::Poisoned);
        }
        while self.segments.get(1).is_some_and(|next| next.first <= lsn) {
            // Forgotten only once removed: a segment whose removal failed is
            // removed first by the next call, so the log never has a hole.
            if let Some(oldest) = self.segments.first() {
                self.fs
                    .remove_file(&oldest.path)
                    .map_err(WalError::io(&oldest.path))?;
            }
            self.segments.remove(0);
            self.fs.sync_dir(&self.dir).map_err(|source| {
                self.shared.poison();
                WalError::Io {
                    path: self.dir.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Writes and syncs the next chunk of zeros of the active segment now,
    /// if less than half a chunk is left ahead of the records: for a moment
    /// when the writer is idle, so that no commit has to extend the segment
    /// itself (its `fdatasync` would then write the chunk out too). Returns
    /// whether it wrote anything.
    ///
    /// # Durability
    ///
    /// Touches no record.
    ///
    /// # Errors
    ///
    /// [`WalError::Io`] if the write or the sync fails, which poisons the
    /// log (a failed `fdatasync` may have dropped the dirty pages of records
    /// too); [`WalError::Poisoned`] if it already was.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use statefn_store::{Lsn, StdFs, Wal, WalOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (mut wal, _) = Wal::open(Arc::new(StdFs), dir.path(), WalOptions::default(), Lsn(1))?;
    /// wal.append(&[7; 40_000]);
    /// wal.write()?.sync()?; // 64 KiB of zeros written after the record
    /// assert!(!wal.preallocate()?, "more than half of them are left");
    /// wal.append(&[8; 40_000]);
    /// wal.write()?.sync()?; // over the zeros
    /// assert!(wal.preallocate()?, "less than half of them are left");
    /// assert!(!wal.preallocate()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[expect(
        clippy::expect_used,
        reason = "invariant: a log always has an active segment, and it is open"
    )]
    pub fn preallocate(&mut self) -> Result<bool, WalError> {
        if self.shared.is_poisoned() {
            return Err(WalError::Poisoned);
        }
        let opts = self.opts;
        let active = self
            .segments
            .last_mut()
            .expect("a log always has a segment");
        let Some(target) = idle_extension(
            active.allocated,
            active.len,
            opts.segment_bytes,
            opts.preallocate_bytes,
        ) else {
            return Ok(false);
        };
        let file = active.file.as_ref().expect("the active segment is open");
        let extended = file
            .file
            .zero_fill(active.allocated, target)
            .and_then(|()| file.file.sync_data());
        if let Err(source) = extended {
            self.shared.poison();
            return Err(WalError::Io {
                path: active.path.clone(),
                source,
            });
        }
        active.allocated = target;
        Ok(true)
    }

    /// The LSN the next appended record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Bytes of log in live segments: headers and written records, not the
    /// zeros written ahead (nor the in-memory buffer). What checkpoint
    /// triggers, metrics and admin output count.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Number of live segment files, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Whether an earlier failure made the log refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned()
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[expect(
        clippy::expect_used,
        reason = "invariant: a log always has an active segment"
    )]
    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has a segment")
    }
}
