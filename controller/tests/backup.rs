//! `ward-controller backup` and `restore` refusing what they must, with a
//! message naming it, and changing nothing then: an archive that is not a
//! whole backup, a database migrated by a newer release, a backup of the
//! other backend. (The round trip with agents is e2e's `backup_restore`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CONTROLLER: &str = env!("CARGO_BIN_EXE_ward-controller");

/// A work directory with an SQLite database holding a user.
fn database() -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-controller-")
        .tempdir()
        .expect("dir");
    let url = format!("sqlite:{}", dir.path().join("ward.db").display());
    let made = ward(&[
        "users",
        "add",
        "night-shift",
        "--role",
        "viewer",
        "--no-password",
        "--database",
        &url,
    ]);
    assert!(made.status.success(), "{}", said(&made));
    (dir, url)
}

fn ward(args: &[&str]) -> Output {
    Command::new(CONTROLLER)
        .args(args)
        .output()
        .expect("ward-controller runs")
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn backup(url: &str, to: &Path) -> Output {
    ward(&["backup", "--database", url, "--to", &to.to_string_lossy()])
}

fn restore(url: &str, from: &Path) -> Output {
    ward(&[
        "restore",
        "--database",
        url,
        "--from",
        &from.to_string_lossy(),
    ])
}

/// The files in `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Unpacks `archive` into `dir`, lets `change` edit it there, packs it
/// again as `to` (the manifest first, as `backup` writes it).
fn repack(archive: &Path, dir: &Path, to: &Path, change: impl FnOnce(&Path)) {
    let file = std::fs::File::open(archive).expect("archive");
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(dir)
        .expect("unpack");
    change(dir);
    let out = std::fs::File::create(to).expect("create");
    let mut packed = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    packed
        .append_path_with_name(dir.join("ward-backup.json"), "ward-backup.json")
        .expect("manifest");
    packed
        .append_path_with_name(dir.join("database.sqlite"), "database.sqlite")
        .expect("database");
    packed.into_inner().expect("tar").finish().expect("gzip");
}

#[test]
fn an_archive_that_is_not_a_whole_backup_is_refused_naming_it_and_the_database_stays() {
    let (dir, url) = database();
    let archive = dir.path().join("ward.tar.gz");
    let taken = backup(&url, &archive);
    assert!(taken.status.success(), "{}", said(&taken));
    let before = std::fs::read(dir.path().join("ward.db")).expect("database");
    let files = names(dir.path());

    let bytes = std::fs::read(&archive).expect("archive");
    let truncated = dir.path().join("truncated.tar.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let refused = restore(&url, &truncated);
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains(&format!("{} is not a ward backup", truncated.display())),
        "{}",
        said(&refused)
    );

    let foreign = dir.path().join("foreign.tar.gz");
    std::fs::write(&foreign, b"PK\x03\x04 a zip file, not ours").expect("write");
    let refused = restore(&url, &foreign);
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains("is not a ward backup"),
        "{}",
        said(&refused)
    );

    let mut expected = files;
    expected.extend(["foreign.tar.gz".to_owned(), "truncated.tar.gz".to_owned()]);
    expected.sort();
    assert_eq!(
        names(dir.path()),
        expected,
        "nothing set aside, nothing left over"
    );
    assert_eq!(
        std::fs::read(dir.path().join("ward.db")).expect("database"),
        before,
        "the database is as it was"
    );
}

#[test]
fn a_database_migrated_by_a_newer_release_is_neither_backed_up_nor_restored() {
    let (dir, url) = database();
    let archive = dir.path().join("ward.tar.gz");
    assert!(backup(&url, &archive).status.success());
    let newer: PathBuf = dir.path().join("newer.tar.gz");
    let unpacked = dir.path().join("unpacked");
    repack(&archive, &unpacked, &newer, |dir| {
        let database = rusqlite::Connection::open(dir.join("database.sqlite")).expect("open");
        database
            .execute(
                "INSERT INTO schema_migrations (version, applied_at_ms) VALUES (9999, 0)",
                [],
            )
            .expect("a newer migration");
    });
    let refused = restore(&url, &newer);
    assert!(!refused.status.success());
    let text = said(&refused);
    assert!(
        text.contains("schema is at migration 9999, newer than this controller knows"),
        "{text}"
    );
    assert!(
        !names(dir.path())
            .iter()
            .any(|name| name.contains("before_restore")),
        "nothing set aside"
    );

    // The same database in place: a backup of it is refused too.
    let in_place = format!("sqlite:{}", unpacked.join("database.sqlite").display());
    let refused = backup(&in_place, &dir.path().join("again.tar.gz"));
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains("migration 9999"),
        "{}",
        said(&refused)
    );
    assert!(!dir.path().join("again.tar.gz").exists());
}

#[test]
fn a_backup_is_restored_only_onto_the_backend_it_was_taken_from() {
    let (dir, url) = database();
    let archive = dir.path().join("ward.tar.gz");
    assert!(backup(&url, &archive).status.success());
    let refused = restore("postgres://ward@127.0.0.1:1/ward", &archive);
    assert!(!refused.status.success());
    assert!(
        said(&refused)
            .contains("holds a sqlite database and this controller's database is postgres"),
        "{}",
        said(&refused)
    );
}

/// The restored database is its directory's owner's (a state directory of
/// the unit's dynamic user), though the restore runs as root.
#[test]
fn restoring_an_sqlite_backup_keeps_the_database_it_replaces() {
    use std::os::unix::fs::MetadataExt as _;
    const SERVICE_USER: u32 = 61_234;
    ward_testkit::require_root("giving the state directory to another user");
    let (dir, url) = database();
    let archive = dir.path().join("ward.tar.gz");
    assert!(backup(&url, &archive).status.success());
    let added = ward(&[
        "users",
        "add",
        "day-shift",
        "--role",
        "viewer",
        "--no-password",
        "--database",
        &url,
    ]);
    assert!(added.status.success(), "{}", said(&added));
    std::os::unix::fs::chown(dir.path(), Some(SERVICE_USER), Some(SERVICE_USER)).expect("chown");
    let restored = restore(&url, &archive);
    assert!(restored.status.success(), "{}", said(&restored));
    let owner = std::fs::metadata(dir.path().join("ward.db")).expect("restored");
    assert_eq!((owner.uid(), owner.gid()), (SERVICE_USER, SERVICE_USER));
    let users = said(&ward(&["users", "list", "--database", &url]));
    assert!(
        users.contains("night-shift") && !users.contains("day-shift"),
        "{users}"
    );
    let aside = names(dir.path())
        .into_iter()
        .find(|name| name.starts_with("ward.db.before_restore_"))
        .expect("the replaced database kept aside");
    let kept = format!("sqlite:{}", dir.path().join(aside).display());
    let users = said(&ward(&["users", "list", "--database", &kept]));
    assert!(users.contains("day-shift"), "{users}");
}
