//! RFC 6962 test vectors (the published CT / transparency-dev data set: eight leaves,
//! the root of every prefix, every complete subtree, and known proofs), corruption
//! probes, and properties over random trees cross-checked with the independent
//! `ct-merkle` implementation.

use proptest::prelude::*;

use super::*;

fn hex(text: &str) -> Hash {
    let bytes: Vec<u8> = (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

fn leaf_inputs() -> Vec<Vec<u8>> {
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
        .iter()
        .map(|text| (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect())
        .collect()
}

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Complete subtrees by level, from the vectors.
const NODES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// (leaf index, tree size, proof) from the published inclusion vectors (1-based leaves
/// there, 0-based here).
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                hex("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                hex("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                hex("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                hex("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                hex("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                hex("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (2, 3, vec![hex("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
        (
            1,
            5,
            vec![
                hex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                hex("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                hex("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

/// (old size, new size, proof) from the published consistency vectors.
fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                hex("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                hex("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                hex("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                hex("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                hex("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                hex("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                hex("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                hex("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                hex("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                hex("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                hex("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

/// (name, leaf index, tree size, leaf hash, proof, root).
type InclusionProbe = (&'static str, u64, u64, Hash, Vec<Hash>, Hash);

/// (name, old size, new size, proof, old root, new root).
type ConsistencyProbe = (&'static str, u64, u64, Vec<Hash>, Hash, Hash);

fn vector_tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for input in leaf_inputs() {
        tree.append(leaf_hash(&input));
    }
    tree
}

#[test]
fn roots_of_every_prefix_match_the_vectors() {
    let mut frontier = Frontier::new();
    assert_eq!(frontier.root(), hex(ROOTS[0]));
    for (size, input) in leaf_inputs().iter().enumerate() {
        frontier.append(leaf_hash(input));
        assert_eq!(frontier.root(), hex(ROOTS[size + 1]), "size {}", size + 1);
    }
    let tree = vector_tree();
    for (size, root) in ROOTS.iter().enumerate() {
        assert_eq!(tree.root_at(size as u64), Some(hex(root)), "root_at({size})");
    }
}

#[test]
fn every_complete_subtree_matches_the_vectors() {
    let tree = vector_tree();
    for (level, hashes) in NODES.iter().enumerate() {
        for (index, hash) in hashes.iter().enumerate() {
            assert_eq!(tree.subtree(level as u32, index as u64), Ok(hex(hash)), "level {level} index {index}");
        }
    }
}

#[test]
fn inclusion_proofs_match_and_verify_and_corruptions_fail() {
    let tree = vector_tree();
    let leaves = leaf_inputs();
    for (index, size, expected) in inclusion_vectors() {
        let proof = inclusion_proof(&tree, index, size).unwrap();
        assert_eq!(proof, expected, "proof for leaf {index} of {size}");
        let root = hex(ROOTS[size as usize]);
        let leaf = leaf_hash(&leaves[index as usize]);
        assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
        // The corruptions of the reference suite: each must fail.
        let mut probes: Vec<InclusionProbe> = vec![
            ("index + 1", index + 1, size, leaf, proof.clone(), root),
            ("index ^ 2", index ^ 2, size, leaf, proof.clone(), root),
            ("size * 2", index, size * 2, leaf, proof.clone(), root),
            ("size / 2", index, size / 2, leaf, proof.clone(), root),
            ("wrong leaf", index, size, leaf_hash(b"WrongLeaf"), proof.clone(), root),
            ("empty root", index, size, leaf, proof.clone(), empty_root()),
            ("trailing root", index, size, leaf, [proof.clone(), vec![root]].concat(), root),
            ("preceding root", index, size, leaf, [vec![root], proof.clone()].concat(), root),
        ];
        if index > 0 {
            probes.push(("index - 1", index - 1, size, leaf, proof.clone(), root));
        }
        for position in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[position][0] ^= 8;
            probes.push(("flipped bit", index, size, leaf, flipped, root));
        }
        if !proof.is_empty() {
            probes.push(("removed component", index, size, leaf, proof[..proof.len() - 1].to_vec(), root));
        }
        for (name, index, size, leaf, proof, root) in probes {
            if name == "index ^ 2" && (index >= size || size == 1) {
                continue;
            }
            assert!(
                verify_inclusion(&leaf, index, size, &proof, &root).is_err(),
                "{name} verified for leaf {index} of {size}"
            );
        }
    }
}

#[test]
fn consistency_proofs_match_and_verify_and_corruptions_fail() {
    let tree = vector_tree();
    for (old, new, expected) in consistency_vectors() {
        let proof = consistency_proof(&tree, old, new).unwrap();
        assert_eq!(proof, expected, "proof {old} -> {new}");
        let (old_root, new_root) = (hex(ROOTS[old as usize]), hex(ROOTS[new as usize]));
        assert_eq!(verify_consistency(old, new, &proof, &old_root, &new_root), Ok(()));
        if proof.is_empty() {
            continue;
        }
        let mut probes: Vec<ConsistencyProbe> = vec![
            ("old - 1", old - 1, new, proof.clone(), old_root, new_root),
            ("old + 1", old + 1, new, proof.clone(), old_root, new_root),
            ("new * 2", old, new * 2, proof.clone(), old_root, new_root),
            ("new / 2", old, new / 2, proof.clone(), old_root, new_root),
            ("wrong old root", old, new, proof.clone(), leaf_hash(b"x"), new_root),
            ("wrong new root", old, new, proof.clone(), old_root, leaf_hash(b"x")),
            ("swapped roots", old, new, proof.clone(), new_root, old_root),
            ("empty proof", old, new, vec![], old_root, new_root),
            ("trailing old root", old, new, [proof.clone(), vec![old_root]].concat(), old_root, new_root),
            ("preceding new root", old, new, [vec![new_root], proof.clone()].concat(), old_root, new_root),
            ("truncated", old, new, proof[..proof.len() - 1].to_vec(), old_root, new_root),
        ];
        for position in 0..proof.len() {
            let mut flipped = proof.clone();
            flipped[position][0] ^= 16;
            probes.push(("flipped bit", old, new, flipped, old_root, new_root));
        }
        for (name, old, new, proof, old_root, new_root) in probes {
            assert!(verify_consistency(old, new, &proof, &old_root, &new_root).is_err(), "{name} verified");
        }
    }
}

#[test]
fn edge_cases_of_consistency_follow_the_reference() {
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    assert_eq!(verify_consistency(0, 0, &[], &a, &a), Ok(()));
    assert_eq!(verify_consistency(0, 1, &[], &a, &b), Ok(()), "the empty tree is a prefix of any tree");
    assert!(verify_consistency(1, 1, &[], &a, &b).is_err(), "equal sizes need equal roots");
    assert!(verify_consistency(1, 0, &[], &a, &b).is_err(), "no time travel");
    assert!(verify_consistency(1, 2, &[], &a, &b).is_err(), "a real change needs a proof");
    assert!(verify_consistency(1, 1, &[empty_root()], &a, &a).is_err(), "equal sizes need an empty proof");
    assert!(verify_inclusion(&a, 0, 0, &[], &a).is_err());
    assert_eq!(verify_inclusion(&a, 0, 1, &[], &a), Ok(()));
}

#[test]
fn impossible_proof_requests_are_refused() {
    let tree = vector_tree();
    assert!(matches!(inclusion_proof(&tree, 8, 8), Err(ProofError::Range(_))));
    assert!(matches!(consistency_proof(&tree, 5, 4), Err(ProofError::Range(_))));
    assert!(matches!(inclusion_proof(&tree, 0, 9), Err(ProofError::Source(_))), "beyond the stored tree");
}

#[test]
fn a_frontier_round_trips_through_its_parts() {
    let tree = vector_tree();
    let frontier = Frontier::from_parts(tree.frontier.size(), tree.frontier.peaks().to_vec()).unwrap();
    assert_eq!(frontier.root(), tree.root());
    assert!(Frontier::from_parts(7, vec![tree.root()]).is_none(), "7 leaves have 3 peaks");
}

fn ct_root(leaves: &[Vec<u8>]) -> ct_merkle::RootHash<sha2::Sha256> {
    let mut tree = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, Vec<u8>>::new();
    for leaf in leaves {
        tree.push(leaf.clone());
    }
    tree.root()
}

fn digests(proof: &[Hash]) -> Vec<sha2::digest::Output<sha2::Sha256>> {
    proof.iter().map(|hash| (*hash).into()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Roots and proofs agree with an independent implementation over random trees.
    #[test]
    fn roots_and_proofs_agree_with_ct_merkle(
        leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..150),
        pick in any::<prop::sample::Index>(),
        old_pick in any::<prop::sample::Index>(),
    ) {
        let mut tree = MemoryTree::new();
        for leaf in &leaves {
            tree.append(leaf_hash(leaf));
        }
        let size = leaves.len() as u64;
        let theirs = ct_root(&leaves);
        let ours = tree.root();
        prop_assert_eq!(ours.as_slice(), theirs.as_bytes().as_slice());

        let index = pick.index(leaves.len()) as u64;
        let proof = inclusion_proof(&tree, index, size).unwrap();
        prop_assert_eq!(verify_inclusion(&leaf_hash(&leaves[index as usize]), index, size, &proof, &tree.root()), Ok(()));
        let their_proof = ct_merkle::InclusionProof::<sha2::Sha256>::from_digests(digests(&proof).iter());
        prop_assert!(theirs.verify_inclusion(&leaves[index as usize], index, &their_proof).is_ok());

        let old = old_pick.index(leaves.len()) as u64 + 1;
        let consistency = consistency_proof(&tree, old, size).unwrap();
        let old_root = tree.root_at(old).unwrap();
        prop_assert_eq!(verify_consistency(old, size, &consistency, &old_root, &tree.root()), Ok(()));
        if old < size {
            let their_old = ct_root(&leaves[..old as usize]);
            let their_proof = ct_merkle::ConsistencyProof::<sha2::Sha256>::from_digests(digests(&consistency).iter());
            prop_assert!(theirs.verify_consistency(&their_old, &their_proof).is_ok());
        }
    }

    /// Changing any one leaf changes the root and breaks every proof through it.
    #[test]
    fn any_changed_leaf_is_detected(size in 1u64..200, pick in any::<prop::sample::Index>()) {
        let mut tree = MemoryTree::new();
        for i in 0..size {
            tree.append(leaf_hash(&i.to_be_bytes()));
        }
        let index = pick.index(size as usize) as u64;
        let proof = inclusion_proof(&tree, index, size).unwrap();
        let forged = leaf_hash(b"forged");
        prop_assert!(verify_inclusion(&forged, index, size, &proof, &tree.root()).is_err());
    }
}
