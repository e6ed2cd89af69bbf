//! Group commit: concurrent writers share one durable sync.
//!
//! One thread (`tio::group_commit`) takes every batch already queued (up to a bound),
//! applies each atomically, syncs the engine once, and only then answers every writer.
//! It never waits to fill a group: a lone writer is synced at once, and under load the
//! batches that arrive during one sync form the next group, so throughput grows with
//! concurrency while each commit waits for at most one sync in progress and its own.
//!
//! A [`GroupFollower`] may add batches of its own to a group once the group's batches
//! are applied and before its sync: work that follows from a commit (a delivery decided
//! on the update just published) is then durable with it, for the price of no sync more.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::engine::{Applied, Batch, CommitError, Engine, StorageError, StorageErrorKind};

/// The most batches one sync covers.
const MAX_GROUP: usize = 4096;

/// How many commits may wait for the commit thread before writers wait to enqueue.
const QUEUE_DEPTH: usize = 16 * 1024;

struct Request {
    batch: Batch,
    reply: oneshot::Sender<Result<Applied, CommitError>>,
}

/// Work that must see the engine with no commit in progress.
type ExclusiveJob = Box<dyn FnOnce(&dyn Engine) + Send>;

/// What the commit thread is asked to do.
enum Job {
    Commit(Request),
    /// Runs between groups: every commit queued before it is applied and synced first,
    /// and none queued after it starts until it returns.
    Exclusive(ExclusiveJob),
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches committed durably.
    pub commits: u64,
    /// Syncs performed.
    pub syncs: u64,
    /// Total microseconds spent in syncs.
    pub sync_micros: u64,
    /// The largest group one sync covered.
    pub largest_group: u64,
    /// Total microseconds spent applying batches.
    pub apply_micros: u64,
    /// Groups applied.
    pub groups: u64,
}

/// Told of every group commit, for metrics: how many batches it durably committed and
/// how long its sync took.
pub trait CommitObserver: Send + Sync {
    /// A group was applied and synced.
    fn group_committed(&self, batches: u64, sync: std::time::Duration);
}

/// Adds batches to a group after its batches are applied and before its one sync, on
/// the commit thread: what it adds is durable with the group or not at all, and commits
/// in the order of the groups. Keep it short: every writer of the group waits for it.
pub trait GroupFollower: Send + Sync {
    /// Returns batches to apply in this group, given the group's batches that applied
    /// (in order, with the positions each was given). Each returned batch applies on its
    /// own terms (a failed precondition applies nothing of it), after the group's.
    fn follow(&self, applied: &[(&Batch, &Applied)]) -> Vec<Batch>;

    /// Tells what became of the batches the last [`GroupFollower::follow`] returned, in
    /// its order, once the group's sync is over: `Ok` only if applied and durable.
    /// Called before any writer of the group is answered.
    fn settled(&self, outcomes: Vec<Result<Applied, CommitError>>);
}

#[derive(Default)]
struct Counters {
    observer: std::sync::OnceLock<Arc<dyn CommitObserver>>,
    follower: std::sync::OnceLock<Arc<dyn GroupFollower>>,
    commits: AtomicU64,
    syncs: AtomicU64,
    sync_micros: AtomicU64,
    largest_group: AtomicU64,
    apply_micros: AtomicU64,
    groups: AtomicU64,
}

/// The commit path of a store: [`GroupCommit::commit`] returns only once the batch is
/// applied and durable.
pub struct GroupCommit {
    sender: Option<mpsc::Sender<Job>>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the commit thread over `engine`.
    pub fn start(engine: Arc<dyn Engine>) -> std::io::Result<GroupCommit> {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("tio::group_commit".to_owned())
            .spawn(move || run(engine.as_ref(), receiver, &thread_counters))?;
        Ok(GroupCommit { sender: Some(sender), counters, thread: Some(thread) })
    }

    /// Applies `batch` atomically and returns once it is durable. On any error nothing
    /// of the batch is acknowledged; after a sync failure its effect is unknown until a
    /// later read (a retry with the same idempotency key settles it).
    pub async fn commit(&self, batch: Batch) -> Result<Applied, CommitError> {
        let closed = || CommitError::Storage(StorageError::new(StorageErrorKind::Closed, "store is shutting down"));
        let sender = self.sender.as_ref().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        sender.send(Job::Commit(Request { batch, reply })).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `job` on the engine while no commit can change it, once every commit queued
    /// before it is durable, and returns its result. Commits wait meanwhile (they queue,
    /// then writers wait to enqueue), so keep `job` short. Blocks the calling thread:
    /// call it from a blocking task, never from an async one.
    pub fn exclusive_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&dyn Engine) -> T + Send + 'static,
    ) -> Result<T, StorageError> {
        let closed = || StorageError::new(StorageErrorKind::Closed, "store is shutting down");
        let sender = self.sender.as_ref().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        let job: ExclusiveJob = Box::new(move |engine| {
            // Ignored error: the caller gave up waiting.
            let _ = reply.send(job(engine));
        });
        sender.blocking_send(Job::Exclusive(job)).map_err(|_| closed())?;
        answer.blocking_recv().map_err(|_| closed())
    }

    /// Sets the observer told of every group commit; only the first call takes effect.
    pub fn set_observer(&self, observer: Arc<dyn CommitObserver>) -> bool {
        self.counters.observer.set(observer).is_ok()
    }

    /// Sets the follower of every group; only the first call takes effect.
    pub fn set_follower(&self, follower: Arc<dyn GroupFollower>) -> bool {
        self.counters.follower.set(follower).is_ok()
    }

    /// Returns the counters so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            sync_micros: self.counters.sync_micros.load(Ordering::Relaxed),
            largest_group: self.counters.largest_group.load(Ordering::Relaxed),
            apply_micros: self.counters.apply_micros.load(Ordering::Relaxed),
            groups: self.counters.groups.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting commits, finishes those queued, and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.sender.take();
        // Dropped on the commit thread itself (its follower let go of the store's last
        // holder): the thread ends once it returns, and cannot wait for itself.
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
            && thread.join().is_err()
        {
            tracing::error!("group commit thread panicked");
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(engine: &dyn Engine, mut receiver: mpsc::Receiver<Job>, counters: &Counters) {
    let mut group: Vec<Request> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = receiver.blocking_recv() {
        // An exclusive job ends the group: it runs once the commits before it are durable.
        let mut exclusive = None;
        match first {
            Job::Commit(request) => group.push(request),
            Job::Exclusive(job) => exclusive = Some(job),
        }
        while exclusive.is_none() && group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(Job::Commit(request)) => group.push(request),
                Ok(Job::Exclusive(job)) => exclusive = Some(job),
                Err(_) => break,
            }
        }
        if !group.is_empty() {
            commit_group(engine, &mut group, counters);
        }
        if let Some(job) = exclusive {
            job(engine);
        }
    }
}

/// Applies `group` and what its follower adds, syncs once, and answers every writer.
fn commit_group(engine: &dyn Engine, group: &mut Vec<Request>, counters: &Counters) {
    let batches: Vec<&Batch> = group.iter().map(|request| &request.batch).collect();
    let applying = Instant::now();
    let results = engine.apply_group(&batches);
    let follower = counters.follower.get();
    let followed = match follower {
        Some(follower) if results.iter().any(Result::is_ok) => {
            let applied: Vec<(&Batch, &Applied)> = batches
                .iter()
                .zip(&results)
                .filter_map(|(batch, result)| result.as_ref().ok().map(|applied| (*batch, applied)))
                .collect();
            let added = follower.follow(&applied);
            let added: Vec<&Batch> = added.iter().collect();
            if added.is_empty() { Vec::new() } else { engine.apply_group(&added) }
        }
        _ => Vec::new(),
    };
    counters
        .apply_micros
        .fetch_add(u64::try_from(applying.elapsed().as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    counters.groups.fetch_add(1, Ordering::Relaxed);
    let mut sync_time = std::time::Duration::ZERO;
    let sync = if results.iter().chain(&followed).any(Result::is_ok) {
        let started = Instant::now();
        let synced = engine.sync();
        sync_time = started.elapsed();
        counters.syncs.fetch_add(1, Ordering::Relaxed);
        counters.sync_micros.fetch_add(u64::try_from(sync_time.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        synced
    } else {
        Ok(())
    };
    if let Err(err) = &sync {
        tracing::error!(error = %err, group.size = group.len(), "sync failed; commits in this group are not acknowledged");
    }
    let durable = |result: Result<Applied, CommitError>| match (result, &sync) {
        (Ok(applied), Ok(())) => Ok(applied),
        (Ok(_), Err(err)) => Err(CommitError::Storage(err.clone())),
        (Err(err), _) => Err(err),
    };
    if let Some(follower) = follower
        && !followed.is_empty()
    {
        follower.settled(followed.into_iter().map(durable).collect());
    }
    let replies: Vec<Result<Applied, CommitError>> = results.into_iter().map(durable).collect();
    // Count before answering, so that a writer holding its answer sees it counted.
    let committed = replies.iter().filter(|reply| reply.is_ok()).count() as u64;
    counters.commits.fetch_add(committed, Ordering::Relaxed);
    counters.largest_group.fetch_max(committed, Ordering::Relaxed);
    if committed > 0
        && let Some(observer) = counters.observer.get()
    {
        observer.group_committed(committed, sync_time);
    }
    for (request, reply) in group.drain(..).zip(replies) {
        // Ignored error: the writer gave up waiting; its batch is durable regardless.
        let _ = request.reply.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::engine::memory::MemoryEngine;
    use crate::engine::sled::SledEngine;
    use crate::engine::{Keyspace, Op};

    async fn concurrent_commits_share_syncs_and_get_dense_positions(engine: Arc<dyn Engine>) {
        let commit = Arc::new(GroupCommit::start(engine.clone()).unwrap());
        let mut tasks = Vec::new();
        for writer in 0..32u32 {
            let commit = commit.clone();
            tasks.push(tokio::spawn(async move {
                let mut positions = Vec::new();
                for item in 0..25u32 {
                    let mut batch = Batch::new();
                    batch.push(Op::Append { space: Keyspace::Updates, value: format!("{writer}/{item}").into_bytes() });
                    positions.push(commit.commit(batch).await.unwrap().positions[0].clone());
                }
                positions
            }));
        }
        let mut all = BTreeSet::new();
        for task in tasks {
            let positions = task.await.unwrap();
            assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "one writer's commits are ordered");
            all.extend(positions);
        }
        assert_eq!(all.len(), 800, "every commit got its own position");
        let expected: BTreeSet<_> = (0..800u64).map(crate::engine::memory::counter_position).collect();
        assert_eq!(all, expected, "positions are dense from 0");
        let stats = commit.stats();
        assert_eq!(stats.commits, 800);
        assert!(stats.syncs <= 800);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_engine_group_commit() {
        concurrent_commits_share_syncs_and_get_dense_positions(Arc::new(MemoryEngine::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_engine_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        concurrent_commits_share_syncs_and_get_dense_positions(Arc::new(SledEngine::open(dir.path()).unwrap())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exclusive_job_sees_every_earlier_commit_and_no_later_one() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let commit = Arc::new(GroupCommit::start(engine.clone()).unwrap());
        let append = |n: u32| {
            let mut batch = Batch::new();
            batch.push(Op::Append { space: Keyspace::Updates, value: n.to_be_bytes().to_vec() });
            batch
        };
        for n in 0..10 {
            commit.commit(append(n)).await.unwrap();
        }
        // The job holds the engine until told to go on; a commit sent meanwhile waits.
        let (go_on, wait) = std::sync::mpsc::channel::<()>();
        let (started, job_started) = tokio::sync::oneshot::channel::<()>();
        let job_commit = commit.clone();
        let job = tokio::task::spawn_blocking(move || {
            job_commit.exclusive_blocking(move |engine| {
                let _ = started.send(());
                let before = engine.scan(Keyspace::Updates, &[], None, 100).unwrap().len();
                wait.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
                let after = engine.scan(Keyspace::Updates, &[], None, 100).unwrap().len();
                (before, after)
            })
        });
        job_started.await.unwrap();
        let writer_commit = commit.clone();
        let writer = tokio::spawn(async move { writer_commit.commit(append(10)).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!writer.is_finished(), "a commit waits while an exclusive job runs");
        go_on.send(()).unwrap();
        assert_eq!(job.await.unwrap().unwrap(), (10, 10), "no commit changed the engine under the job");
        writer.await.unwrap().unwrap();
        assert_eq!(engine.scan(Keyspace::Updates, &[], None, 100).unwrap().len(), 11);
    }

    /// A batch that puts `key` on condition that it holds a value it never holds.
    fn conflicting(key: &[u8]) -> Batch {
        let mut batch = Batch::new();
        batch
            .require(crate::engine::Condition::Equals {
                space: Keyspace::Cursors,
                key: key.to_vec(),
                value: b"1".to_vec(),
            })
            .push(Op::Put { space: Keyspace::Cursors, key: key.to_vec(), value: b"2".to_vec() });
        batch
    }

    /// Adds, for each applied batch, a batch that records its first position, and one
    /// batch whose precondition never holds; keeps what it is told.
    #[derive(Default)]
    struct Recorder {
        settled: std::sync::Mutex<Vec<Vec<bool>>>,
    }

    impl GroupFollower for Recorder {
        fn follow(&self, applied: &[(&Batch, &Applied)]) -> Vec<Batch> {
            let mut added: Vec<Batch> = applied
                .iter()
                .map(|(_, applied)| {
                    let mut batch = Batch::new();
                    batch.push(Op::Put {
                        space: Keyspace::Cursors,
                        key: applied.positions[0].as_bytes().to_vec(),
                        value: b"followed".to_vec(),
                    });
                    batch
                })
                .collect();
            added.push(conflicting(b"never"));
            added
        }

        fn settled(&self, outcomes: Vec<Result<Applied, CommitError>>) {
            self.settled.lock().unwrap().push(outcomes.iter().map(Result::is_ok).collect());
        }
    }

    #[tokio::test]
    async fn a_follower_adds_to_the_group_what_its_one_sync_makes_durable() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let commit = GroupCommit::start(engine.clone()).unwrap();
        let follower = Arc::new(Recorder::default());
        assert!(commit.set_follower(follower.clone()));
        let mut batch = Batch::new();
        batch.push(Op::Append { space: Keyspace::Updates, value: b"update".to_vec() });
        let position = commit.commit(batch).await.unwrap().positions[0].clone();
        assert_eq!(
            engine.get(Keyspace::Cursors, position.as_bytes()).unwrap(),
            Some(b"followed".to_vec()),
            "what the follower added was applied"
        );
        assert_eq!(engine.get(Keyspace::Cursors, b"never").unwrap(), None, "a failed precondition applies nothing");
        assert_eq!(commit.stats().syncs, 1, "the group and what followed it share one sync");
        assert_eq!(*follower.settled.lock().unwrap(), vec![vec![true, false]], "told of each outcome, in order");

        // A group none of whose batches applies is not followed.
        let mut failing = Batch::new();
        failing
            .require(crate::engine::Condition::Absent { space: Keyspace::Cursors, key: position.as_bytes().to_vec() });
        assert!(matches!(commit.commit(failing).await, Err(CommitError::Conflict { index: 0 })));
        assert_eq!(follower.settled.lock().unwrap().len(), 1);
        assert_eq!(commit.stats().syncs, 1);
        commit.shutdown();
    }

    #[tokio::test]
    async fn a_conflict_fails_alone_and_commit_after_shutdown_is_refused() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let commit = GroupCommit::start(engine.clone()).unwrap();
        assert!(matches!(commit.commit(conflicting(b"x")).await, Err(CommitError::Conflict { index: 0 })));
        let mut fine = Batch::new();
        fine.push(Op::Put { space: Keyspace::Cursors, key: b"y".to_vec(), value: b"1".to_vec() });
        commit.commit(fine.clone()).await.unwrap();
        assert_eq!(engine.get(Keyspace::Cursors, b"y").unwrap(), Some(b"1".to_vec()));
        commit.shutdown();
    }
}
