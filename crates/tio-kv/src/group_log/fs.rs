//! The group log's file I/O, behind a small interface so that a test can stand in for
//! the disk and cut the power ([`SimulatedDisk`]): everything the log does to its files
//! goes through [`LogDir`] and [`LogFile`].

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// One file of the log.
pub trait LogFile: Send + Sync {
    /// Reads into `buf` from `offset`; returns how many bytes were read (fewer at the
    /// end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Reserves the file's blocks up to `len` bytes, reading as zeros, so that later
    /// writes inside it neither run out of space nor change the file's metadata.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn size(&self) -> io::Result<u64>;
}

/// The directory holding the log's files.
pub trait LogDir: Send + Sync {
    /// Names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>>;
    /// Creates a new, empty file (failing if it exists).
    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>>;
    /// Renames a file, replacing nothing.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync(&self) -> io::Result<()>;
}

/// A real directory on disk.
#[derive(Debug, Clone)]
pub struct DiskDir {
    path: PathBuf,
}

impl DiskDir {
    /// The directory at `path`, created if absent.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<DiskDir> {
        let path = path.into();
        std::fs::create_dir_all(&path)?;
        Ok(DiskDir { path })
    }
}

struct DiskFile(std::fs::File);

impl LogFile for DiskFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut read = 0;
        while read < buf.len() {
            match self.0.read_at(&mut buf[read..], offset + read as u64) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(read)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // A file system without fallocate: the file is extended sparsely, which reads
            // as zeros just the same; only the space is not reserved.
            Err(rustix::io::Errno::OPNOTSUPP) => self.0.set_len(len.max(self.0.metadata()?.len())),
            Err(errno) => Err(errno.into()),
        }
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl LogDir for DiskDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(self.path.join(name))?;
        Ok(Arc::new(DiskFile(file)))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(self.path.join(name))?;
        Ok(Arc::new(DiskFile(file)))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path.join(from), self.path.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path.join(name))
    }

    fn sync(&self) -> io::Result<()> {
        std::fs::File::open(&self.path)?.sync_all()
    }
}

/// A disk in memory that remembers what has been made durable, for power-cut tests:
/// [`SimulatedDisk::power_cut`] keeps only what a completed `sync_data` (for contents)
/// or directory `sync` (for names) covered, and can let part of the writes in flight
/// through, as a real disk may.
#[derive(Clone, Default)]
pub struct SimulatedDisk {
    state: Arc<Mutex<DiskState>>,
}

#[derive(Default)]
struct DiskState {
    files: Vec<SimFile>,
    /// Names as the running program sees them.
    names: HashMap<String, usize>,
    /// Names as they would be found after a power cut.
    durable_names: HashMap<String, usize>,
    /// Operations left before the disk stops answering (the process is dying); `None`
    /// for no limit.
    operations_left: Option<u64>,
}

#[derive(Clone, Default)]
struct SimFile {
    contents: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order: what a power cut may or may not keep.
    in_flight: Vec<(u64, Vec<u8>)>,
}

/// How much of the writes in flight (not yet synced) a power cut lets reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tear {
    /// Writes in flight kept whole, oldest first, in each file.
    pub whole_writes: usize,
    /// Bytes kept of the next write in flight, from its start.
    pub partial_bytes: usize,
}

impl SimulatedDisk {
    /// An empty disk.
    pub fn new() -> SimulatedDisk {
        SimulatedDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        // A panic while holding the lock only happens in a failing test.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets `operations` more file or directory operations succeed; every one after
    /// fails, as for a process the power cut stops part-way.
    pub fn fail_after(&self, operations: u64) {
        self.state().operations_left = Some(operations);
    }

    /// Lets every operation succeed again (the disk has space again).
    pub fn heal(&self) {
        self.state().operations_left = None;
    }

    /// Operations so far would be counted from here: how many have run since
    /// [`SimulatedDisk::fail_after`], for a test choosing crash points.
    pub fn operations_left(&self) -> Option<u64> {
        self.state().operations_left
    }

    /// The disk as found after the power comes back: the names made durable by a
    /// directory sync, each file's synced contents, plus the writes in flight that `tear`
    /// lets through.
    pub fn power_cut(&self, tear: Tear) -> SimulatedDisk {
        let state = self.state();
        let mut files = Vec::new();
        let mut names = HashMap::new();
        for (name, id) in &state.durable_names {
            let file = &state.files[*id];
            let mut contents = file.durable.clone();
            for (index, (offset, bytes)) in file.in_flight.iter().enumerate() {
                let kept = match index.cmp(&tear.whole_writes) {
                    std::cmp::Ordering::Less => bytes.len(),
                    std::cmp::Ordering::Equal => tear.partial_bytes.min(bytes.len()),
                    std::cmp::Ordering::Greater => 0,
                };
                write_into(&mut contents, *offset, &bytes[..kept]);
            }
            names.insert(name.clone(), files.len());
            files.push(SimFile { durable: contents.clone(), contents, in_flight: Vec::new() });
        }
        SimulatedDisk {
            state: Arc::new(Mutex::new(DiskState {
                files,
                durable_names: names.clone(),
                names,
                operations_left: None,
            })),
        }
    }

    /// A file's current contents, for tests that damage or inspect it.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state();
        state.names.get(name).map(|id| state.files[*id].contents.clone())
    }

    /// Replaces a file's contents, durably, as damage on the disk would.
    pub fn set_contents(&self, name: &str, contents: Vec<u8>) {
        let mut state = self.state();
        if let Some(id) = state.names.get(name).copied() {
            state.files[id] = SimFile { durable: contents.clone(), contents, in_flight: Vec::new() };
        }
    }

    /// Removes a file durably, as an operator's mistake would.
    pub fn delete(&self, name: &str) {
        let mut state = self.state();
        state.names.remove(name);
        state.durable_names.remove(name);
    }
}

fn write_into(contents: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = offset.saturating_add(bytes.len());
    if contents.len() < end {
        contents.resize(end, 0);
    }
    contents[offset..end].copy_from_slice(bytes);
}

impl DiskState {
    fn spend(&mut self) -> io::Result<()> {
        match &mut self.operations_left {
            Some(0) => Err(io::Error::other("the simulated disk has lost power")),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

struct SimHandle {
    disk: SimulatedDisk,
    id: usize,
}

impl LogFile for SimHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.disk.state();
        let contents = &state.files[self.id].contents;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(contents.len());
        let n = buf.len().min(contents.len() - start);
        buf[..n].copy_from_slice(&contents[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.disk.state();
        state.spend()?;
        let file = &mut state.files[self.id];
        write_into(&mut file.contents, offset, buf);
        file.in_flight.push((offset, buf.to_vec()));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.disk.state();
        state.spend()?;
        let file = &mut state.files[self.id];
        file.durable = file.contents.clone();
        file.in_flight.clear();
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.state();
        state.spend()?;
        let file = &mut state.files[self.id];
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if file.contents.len() < len {
            // Allocation extends the file; like a length change it is durable only
            // with the next sync, and reads as zeros either way.
            file.contents.resize(len, 0);
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.disk.state().files[self.id].contents.len() as u64)
    }
}

impl LogDir for SimulatedDisk {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.state().names.keys().cloned().collect())
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let id = self.state().names.get(name).copied().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Arc::new(SimHandle { disk: self.clone(), id }))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn LogFile>> {
        let mut state = self.state();
        state.spend()?;
        if state.names.contains_key(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let id = state.files.len();
        state.files.push(SimFile::default());
        state.names.insert(name.to_owned(), id);
        Ok(Arc::new(SimHandle { disk: self.clone(), id }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.state();
        state.spend()?;
        let id = state.names.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        state.names.insert(to.to_owned(), id);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.state();
        state.spend()?;
        state.names.remove(name).map(|_| ()).ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.state();
        state.spend()?;
        state.durable_names = state.names.clone();
        Ok(())
    }
}
