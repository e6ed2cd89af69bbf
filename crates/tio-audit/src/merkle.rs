//! RFC 6962 Merkle trees: hashing, an incremental root, and inclusion and consistency
//! proofs (generation over stored subtree hashes, verification per RFC 9162 §2.1.3–4).

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `MTH({d}) = SHA-256(0x00 || d)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The append-only frontier of a tree: the roots of its complete subtrees, largest
/// first. Appending a leaf and computing the root cost O(log n) hashes, so the log
/// never rehashes what it already has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, from the highest bit down.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// Returns the frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Rebuilds a frontier from its size and peaks (as stored), checking their count.
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Option<Frontier> {
        (peaks.len() == size.count_ones() as usize).then_some(Frontier { size, peaks })
    }

    /// Returns the number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Returns the peaks, largest subtree first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends a leaf hash; returns the complete subtrees this completed, as
    /// `(level, index, hash)`, so that a caller can store them for proofs.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut completed = vec![(0, self.size, leaf)];
        let mut hash = leaf;
        let mut level = 0u32;
        // Each trailing one bit of the old size is a peak that merges with the new one.
        while (self.size >> level) & 1 == 1 {
            let left = self.peaks.pop().unwrap_or_else(|| unreachable!("a set bit has a peak"));
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push((level, self.size >> level, hash));
        }
        self.peaks.push(hash);
        self.size += 1;
        completed
    }

    /// Returns the root: the peaks folded from the smallest up.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(first) = peaks.next() else { return empty_root() };
        peaks.fold(*first, |right, left| node_hash(left, &right))
    }
}

/// Where proofs read hashes of complete subtrees: `subtree(level, index)` is the hash of
/// leaves `[index * 2^level, (index + 1) * 2^level)`.
pub trait SubtreeSource {
    /// The error a lookup can fail with.
    type Error;

    /// Returns the hash of a complete subtree that exists in the tree.
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The requested sizes or index are impossible.
    #[error("{0}")]
    Range(&'static str),
    /// The source failed.
    #[error("cannot read a subtree hash")]
    Source(E),
}

/// Returns the largest power of two strictly less than `n` (for `n > 1`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start:end])` from complete subtrees: `start` is always aligned to the size
/// of its left part in RFC 6962's recursion, so each piece is a stored subtree.
fn range_hash<S: SubtreeSource>(source: &S, start: u64, end: u64) -> Result<Hash, ProofError<S::Error>> {
    let size = end - start;
    if size.is_power_of_two() && start.is_multiple_of(size) {
        return source.subtree(size.trailing_zeros(), start / size).map_err(ProofError::Source);
    }
    let k = split_point(size);
    Ok(node_hash(&range_hash(source, start, start + k)?, &range_hash(source, start + k, end)?))
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 `PATH`),
/// leaf side first.
pub fn inclusion_proof<S: SubtreeSource>(source: &S, index: u64, size: u64) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::Range("leaf index must be below the tree size"));
    }
    let mut proof = Vec::new();
    path(source, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<S: SubtreeSource>(
    source: &S,
    index: u64,
    start: u64,
    end: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), ProofError<S::Error>> {
    let size = end - start;
    if size == 1 {
        return Ok(());
    }
    let k = split_point(size);
    if index < k {
        path(source, index, start, start + k, proof)?;
        proof.push(range_hash(source, start + k, end)?);
    } else {
        path(source, index - k, start + k, end, proof)?;
        proof.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `old_size` and `new_size` leaves (RFC
/// 6962 `PROOF`); empty when the sizes are equal or the old tree is empty.
pub fn consistency_proof<S: SubtreeSource>(
    source: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size > new_size {
        return Err(ProofError::Range("the old size must not exceed the new size"));
    }
    let mut proof = Vec::new();
    if old_size > 0 && old_size < new_size {
        subproof(source, old_size, 0, new_size, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof<S: SubtreeSource>(
    source: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), ProofError<S::Error>> {
    let n = end - start;
    if m == n {
        if !whole {
            proof.push(range_hash(source, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(source, m, start, start + k, whole, proof)?;
        proof.push(range_hash(source, start + k, end)?);
    } else {
        subproof(source, m - k, start + k, end, false, proof)?;
        proof.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// Why a proof does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The sizes or index are impossible.
    #[error("impossible tree sizes or leaf index")]
    Range,
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has the wrong length")]
    Length,
    /// The recomputed root differs.
    #[error("root hash mismatch")]
    Mismatch,
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::Range);
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in proof {
        if sn == 0 {
            return Err(VerifyError::Length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            hash = node_hash(sibling, &hash);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(VerifyError::Length);
    }
    if hash != *root {
        return Err(VerifyError::Mismatch);
    }
    Ok(())
}

/// Verifies that the tree of `old_size` leaves with `old_root` is a prefix of the tree
/// of `new_size` leaves with `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::Range);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(VerifyError::Length);
        }
        return if old_root == new_root { Ok(()) } else { Err(VerifyError::Mismatch) };
    }
    if old_size == 0 {
        // The empty tree is a prefix of every tree.
        return if proof.is_empty() { Ok(()) } else { Err(VerifyError::Length) };
    }
    if proof.is_empty() {
        return Err(VerifyError::Length);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(VerifyError::Length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(VerifyError::Length);
    }
    if fr != *old_root || sr != *new_root {
        return Err(VerifyError::Mismatch);
    }
    Ok(())
}

/// Every complete subtree of a tree held in memory, for tests and offline verification
/// of an exported log.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    /// `levels[l][i]` is the hash of complete subtree `i` at level `l`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Returns an empty tree.
    pub fn new() -> Self {
        MemoryTree::default()
    }

    /// Appends a leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        for (level, index, hash) in self.frontier.append(leaf) {
            let level = level as usize;
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            debug_assert_eq!(self.levels[level].len() as u64, index);
            self.levels[level].push(hash);
        }
    }

    /// Returns the number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Returns the root of the whole tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Returns the root of the tree of its first `size` leaves.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        match size {
            0 => Some(empty_root()),
            size if size <= self.size() => range_hash(self, 0, size).ok(),
            _ => None,
        }
    }
}

impl SubtreeSource for MemoryTree {
    type Error = &'static str;

    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        self.levels.get(level as usize).and_then(|hashes| hashes.get(index as usize)).copied().ok_or("no such subtree")
    }
}

#[cfg(test)]
mod tests;
