//! Replays the committed fuzz corpus (`fuzz/corpus/`) through the same
//! drivers the cargo-fuzz targets run, on stable Rust, and checks that the
//! generated seed files (`seed-*`) are fresh.
//!
//! To regenerate the seeds after changing `shoal_core::wire::fuzzing`:
//! `SHOAL_BLESS=1 cargo test -p shoal-core --test wire_corpus`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use shoal_core::wire::fuzzing;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus");

type Driver = fn(&[u8]);
type Seeds = fn() -> Vec<(String, Vec<u8>)>;

const TARGETS: [(&str, Driver, Seeds); 2] = [
    ("frame_decoder", fuzzing::fuzz_frame_decoder, fuzzing::frame_decoder_seeds),
    ("handshake", fuzzing::fuzz_handshake, fuzzing::handshake_seeds),
];

fn files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries
        .map(|entry| entry.expect("a readable corpus directory").path())
        .filter(|path| path.is_file())
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), path))
        .collect()
}

#[test]
fn every_corpus_file_replays_without_a_panic() {
    for (target, driver, _) in TARGETS {
        let dir = Path::new(CORPUS).join(target);
        let files = files(&dir);
        assert!(files.len() >= 10, "{}: only {} corpus files", dir.display(), files.len());
        for (name, path) in &files {
            let data = fs::read(path).unwrap();
            // A panic names the file: the driver's own message says why.
            eprintln!("replaying {target}/{name}");
            driver(&data);
        }
        println!("{target}: replayed {} files", files.len());
    }
}

#[test]
fn seed_files_are_fresh() {
    let bless = std::env::var_os("SHOAL_BLESS").is_some();
    let mut stale = Vec::new();
    for (target, _, seeds) in TARGETS {
        let dir = Path::new(CORPUS).join(target);
        if bless {
            fs::create_dir_all(&dir).unwrap();
        }
        let seeds = seeds();
        let on_disk = files(&dir);
        for (name, path) in on_disk.iter().filter(|(name, _)| name.starts_with("seed-")) {
            if !seeds.iter().any(|(seed, _)| seed == name) {
                if bless {
                    fs::remove_file(path).unwrap();
                } else {
                    stale.push(format!("{target}/{name} is no longer generated"));
                }
            }
        }
        for (name, data) in &seeds {
            let path = dir.join(name);
            if fs::read(&path).ok().as_ref() != Some(data) {
                if bless {
                    fs::write(&path, data).unwrap();
                } else {
                    stale.push(format!("{target}/{name} is missing or differs"));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the seed corpus is stale; run `SHOAL_BLESS=1 cargo test -p shoal-core --test \
         wire_corpus`:\n{}",
        stale.join("\n")
    );
}
