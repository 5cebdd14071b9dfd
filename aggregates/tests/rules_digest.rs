//! The digest of every rule set in the repository, pinned.
//!
//! Every ledger and aggregate item tally writes carries its rules' digest (`rulesDigest`), and
//! `tally verify` counts the items carrying another as written under other rules. Changing a
//! pinned value here therefore means that every deployed table of those rules will need
//! `tally backfill --rules-changed` (or an alias in `aggregates/src/rules/digest.rs`'s `LEGACY`
//! table): change one only with the rules' meaning, or with a new version of the encoding.

use std::path::Path;

use aggregates::rules::Rules;

/// Each rule set that loads, by its path in the repository, with its digest.
const PINNED: &[(&str, &str)] = &[
    ("aggregates/rules/university.toml", "7fbc2f4f4a0ad62e"),
    ("examples/rules/learning.toml", "9009622497585bf9"),
    ("examples/rules/marketplace.toml", "f566ef41fa778ae8"),
    ("fixtures/rules/chat.toml", "2c541149cbaf5a57"),
];

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn every_rule_set_in_the_repository_has_its_pinned_digest() {
    for (path, digest) in PINNED {
        let text = std::fs::read_to_string(root().join(path)).unwrap();
        let rules = Rules::from_toml(&text, path).unwrap_or_else(|errors| panic!("{errors}"));
        assert_eq!(rules.digest(), *digest, "{path}: every deployed table of these rules would need `backfill --rules-changed`");
    }
    assert_eq!(Rules::university().digest(), PINNED[0].1, "the embedded rules are the file");
}

/// A rule set added to the repository is pinned too.
#[test]
fn every_rule_set_that_loads_is_pinned() {
    let mut loading = vec!["aggregates/rules/university.toml".to_owned()];
    for directory in ["examples/rules", "fixtures/rules"] {
        for entry in std::fs::read_dir(root().join(directory)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|extension| extension == "toml") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if Rules::from_toml(&text, "rules.toml").is_ok() {
                    loading.push(format!("{directory}/{}", path.file_name().unwrap().to_string_lossy()));
                }
            }
        }
    }
    loading.sort();
    let mut pinned: Vec<String> = PINNED.iter().map(|(path, _)| (*path).to_owned()).collect();
    pinned.sort();
    assert_eq!(loading, pinned);
}
