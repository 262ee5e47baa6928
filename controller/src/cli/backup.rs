//! `ward-controller backup` and `restore`: the status database with the
//! configuration and certificates in one archive (a gzipped tar), and a
//! restore that never shows the backup's statuses as the truth.
//!
//! SQLite is copied online (`VACUUM INTO`); PostgreSQL is dumped with
//! `pg_dump` and restored with `pg_restore` into a fresh `public` schema,
//! the one it replaces kept aside under another name. After either, every
//! device is `unknown` until its agent reports (agents state every device
//! again when they reconnect); alerts and history are the backup's.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::store::{Store, StoreError};

/// The archive's layout; a restore refuses any other.
const FORMAT: u32 = 1;
/// The archive's first entry.
const MANIFEST: &str = "ward-backup.json";
/// Where the configuration and certificates go in the archive.
const FILES: &str = "files";

/// What a backup holds, written first in the archive.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    /// [`FORMAT`].
    format: u32,
    /// The `ward-controller` that took it.
    ward_version: String,
    /// `sqlite` or `postgres`.
    pub(super) backend: String,
    /// The database's last migration.
    pub(super) schema_version: i64,
    /// When, Unix ms and RFC 3339.
    taken_at_ms: i64,
    pub(super) taken_at: String,
    /// The database's entry: `database.sqlite` or `database.pgdump`.
    database: String,
    /// The configuration and certificates, where they were.
    pub(super) files: Vec<SavedFile>,
}

/// A file of the controller's kept in the archive.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SavedFile {
    /// Its entry in the archive (`files/…`).
    entry: String,
    /// Where it was on the controller's host.
    was: PathBuf,
}

/// `backup --to FILE`: the database of `settings` (with `password`), the
/// configuration file `config` and the TLS files it names, written to
/// `to` atomically (mode 0600: it holds the controller's private key).
pub(super) async fn backup(
    settings: &Settings,
    password: Option<&str>,
    config: Option<&Path>,
    to: &Path,
) -> anyhow::Result<Manifest> {
    let store = Store::connect(&settings.database, password).await?;
    let schema_version = check_known(&store).await?;
    let work = work_dir_beside(to)?;
    let taken_at_ms = crate::time::now_ms();
    let database = match store.backend_name() {
        "sqlite" => {
            let entry = "database.sqlite";
            store
                .copy_into(&work.path().join(entry))
                .await
                .context("copying the SQLite database")?;
            entry
        }
        _ => {
            let entry = "database.pgdump";
            pg_dump(&settings.database, password, &work.path().join(entry))?;
            entry
        }
    };
    let manifest = Manifest {
        format: FORMAT,
        ward_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: store.backend_name().to_owned(),
        schema_version,
        taken_at_ms,
        taken_at: crate::time::rfc3339(taken_at_ms),
        database: database.to_owned(),
        files: controller_files(settings, config),
    };
    write_archive(to, &manifest, &work.path().join(database))?;
    Ok(manifest)
}

/// The configuration file and the TLS files `settings` names.
fn controller_files(settings: &Settings, config: Option<&Path>) -> Vec<SavedFile> {
    let mut paths: Vec<&Path> = config.into_iter().collect();
    if let Some(tls) = &settings.tls {
        paths.extend([
            tls.cert.as_path(),
            tls.key.as_path(),
            tls.client_ca.as_path(),
        ]);
    }
    paths
        .into_iter()
        .enumerate()
        .map(|(index, path)| SavedFile {
            entry: format!(
                "{FILES}/{index}-{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
            was: path.to_owned(),
        })
        .collect()
}

/// A scratch directory on `file`'s file system (renames stay atomic).
fn work_dir_beside(file: &Path) -> anyhow::Result<tempfile::TempDir> {
    let dir = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".ward-backup-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot make a scratch directory in {}", dir.display()))
}

/// `pg_dump` of `url` in its custom format into `out`.
fn pg_dump(url: &str, password: Option<&str>, out: &Path) -> anyhow::Result<()> {
    let mut command = Command::new("pg_dump");
    command
        .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
        .arg(out)
        .arg("--dbname")
        .arg(url);
    run_client(command, password, "pg_dump")
}

/// Runs PostgreSQL's client program `name` with `password`; its error
/// output in the error if it fails.
fn run_client(mut command: Command, password: Option<&str>, name: &str) -> anyhow::Result<()> {
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().with_context(|| {
        format!(
            "cannot run {name}: install PostgreSQL's client programs (Debian: postgresql-client)"
        )
    })?;
    if !output.status.success() {
        bail!(
            "{name} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Writes the archive to `to` through `to.partial`, synced, then renamed.
fn write_archive(to: &Path, manifest: &Manifest, database: &Path) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::default(),
    ));
    let text = serde_json::to_vec_pretty(manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(u64::try_from(manifest.taken_at_ms / 1000).unwrap_or(0));
    header.set_cksum();
    archive.append_data(&mut header, MANIFEST, text.as_slice())?;
    archive.append_path_with_name(database, &manifest.database)?;
    for saved in &manifest.files {
        archive
            .append_path_with_name(&saved.was, &saved.entry)
            .with_context(|| format!("cannot read {}", saved.was.display()))?;
    }
    let mut file = archive.into_inner()?.finish()?;
    file.flush()?;
    file.sync_all()?;
    std::fs::rename(&partial, to)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), to.display()))?;
    Ok(())
}

/// Unpacks the archive `from` into `into`; its manifest, checked.
fn read_archive(from: &Path, into: &Path) -> anyhow::Result<Manifest> {
    let file = File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let not_a_backup = || format!("{} is not a ward backup", from.display());
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(into)
        .with_context(not_a_backup)?;
    let text = std::fs::read(into.join(MANIFEST)).with_context(not_a_backup)?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{}: {MANIFEST} is unreadable", from.display()))?;
    if manifest.format != FORMAT {
        bail!(
            "{} is a backup of format {}; this ward-controller reads format {FORMAT}",
            from.display(),
            manifest.format
        );
    }
    if !into.join(&manifest.database).is_file() {
        bail!(
            "{}: the database ({}) is missing",
            from.display(),
            manifest.database
        );
    }
    Ok(manifest)
}

/// What a restore did, for the operator.
pub(super) struct Restored {
    /// The backup's manifest (none when the database was put back by hand).
    pub(super) manifest: Option<Manifest>,
    /// The devices made `unknown`.
    pub(super) forgotten: usize,
    /// Where the database as it was before is kept.
    pub(super) kept_aside: Option<String>,
    /// The configuration and certificates written out.
    pub(super) files_written: Vec<PathBuf>,
}

/// `restore --from FILE`: puts the backup's database in place of the one
/// `settings` names (no controller may run on it), migrates it, and makes
/// every device `unknown`; the configuration and certificates go to
/// `files_to` when given (never over an existing file).
pub(super) async fn restore(
    settings: &Settings,
    password: Option<&str>,
    from: &Path,
    files_to: Option<&Path>,
) -> anyhow::Result<Restored> {
    let work = work_dir_beside(match sqlite_path(settings) {
        Some(path) => Path::new(path),
        None => from,
    })?;
    let manifest = read_archive(from, work.path())?;
    let backend = match sqlite_path(settings) {
        Some(_) => "sqlite",
        None => "postgres",
    };
    if manifest.backend != backend {
        bail!(
            "{} holds a {} database and this controller's database is {backend}: restore it \
             onto the backend it was taken from",
            from.display(),
            manifest.backend
        );
    }
    let aside = format!(
        "before_restore_{}",
        crate::time::rfc3339(crate::time::now_ms())
            .chars()
            .filter(char::is_ascii_digit)
            .take(14)
            .collect::<String>()
    );
    let database = work.path().join(&manifest.database);
    let kept_aside = match sqlite_path(settings) {
        Some(path) => {
            let _lock = super::serve::hold_sqlite(&settings.database)?;
            check_known(&Store::connect(&format!("sqlite:{}", database.display()), None).await?)
                .await?;
            put_sqlite_in_place(&database, path, &aside)?
        }
        None => {
            let store = Store::connect(&settings.database, password).await?;
            refuse_if_controllers(&store).await?;
            refuse_newer(manifest.schema_version, store.latest_migration())?;
            let aside = format!("ward_{aside}");
            store.set_aside(&aside).await?;
            drop(store);
            pg_restore(&settings.database, password, &database, &aside).await?;
            Some(format!("schema {aside}"))
        }
    };
    let files_written = match files_to {
        Some(dir) => write_files(&manifest, work.path(), dir)?,
        None => Vec::new(),
    };
    let reason = format!(
        "restored from a backup taken at {}; waiting for its agent",
        manifest.taken_at
    );
    let forgotten = forget_statuses(settings, password, &reason).await?;
    Ok(Restored {
        manifest: Some(manifest),
        forgotten,
        kept_aside,
        files_written,
    })
}

/// `restore --already-restored`: the database was put back by other
/// means (`pg_restore`, point-in-time recovery, a copied file); migrates
/// it and makes every device `unknown`.
pub(super) async fn already_restored(
    settings: &Settings,
    password: Option<&str>,
) -> anyhow::Result<Restored> {
    let _lock = super::serve::hold_sqlite(&settings.database)?;
    if sqlite_path(settings).is_none() {
        refuse_if_controllers(&Store::connect(&settings.database, password).await?).await?;
    }
    let forgotten = forget_statuses(
        settings,
        password,
        "restored from a backup by hand; waiting for its agent",
    )
    .await?;
    Ok(Restored {
        manifest: None,
        forgotten,
        kept_aside: None,
        files_written: Vec::new(),
    })
}

/// The SQLite file `settings` names, if it is SQLite.
fn sqlite_path(settings: &Settings) -> Option<&str> {
    settings.database.strip_prefix("sqlite:")
}

/// The database's last migration; refused if past what this build knows.
async fn check_known(store: &Store) -> anyhow::Result<i64> {
    let database = store.schema_version().await?;
    refuse_newer(database, store.latest_migration())?;
    Ok(database)
}

/// Refuses a schema at migration `database` past this build's `known`.
fn refuse_newer(database: i64, known: i64) -> Result<(), StoreError> {
    if database > known {
        return Err(StoreError::SchemaNewer { database, known });
    }
    Ok(())
}

/// Refuses while any controller is connected to the PostgreSQL database.
async fn refuse_if_controllers(store: &Store) -> anyhow::Result<()> {
    let connected = store.controllers_connected().await?;
    if connected > 0 {
        bail!(
            "{connected} connection(s) of a running ward-controller are open on this database: \
             stop every controller of the cluster first (systemctl stop ward-controller), then \
             restore"
        );
    }
    Ok(())
}

/// Moves the SQLite database at `path` (with its WAL) aside as
/// `path.aside` and the restored copy `database` in its place.
fn put_sqlite_in_place(database: &Path, path: &str, aside: &str) -> anyhow::Result<Option<String>> {
    let kept = format!("{path}.{aside}");
    let existed = Path::new(path).exists();
    if existed {
        for suffix in ["", "-wal", "-shm"] {
            let from = format!("{path}{suffix}");
            if Path::new(&from).exists() {
                std::fs::rename(&from, format!("{kept}{suffix}"))
                    .with_context(|| format!("cannot move {from} aside"))?;
            }
        }
    }
    // Owned as its directory: a restore run as root leaves a database the
    // service's (dynamic) user can write (a state directory made by hand
    // is root's, and systemd hands it and its files to the unit's user).
    let directory = Path::new(path)
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let owner = std::fs::metadata(directory)
        .with_context(|| format!("cannot read {}", directory.display()))?;
    {
        use std::os::unix::fs::MetadataExt as _;
        std::os::unix::fs::chown(database, Some(owner.uid()), Some(owner.gid())).with_context(
            || {
                format!(
                    "cannot give the restored database {}'s owner",
                    directory.display()
                )
            },
        )?;
    }
    std::fs::rename(database, path).with_context(|| format!("cannot write {path}"))?;
    Ok(existed.then_some(kept))
}

/// `pg_restore` of `dump` into the empty `public` schema, all or nothing;
/// on failure the schema set aside is put back.
async fn pg_restore(
    url: &str,
    password: Option<&str>,
    dump: &Path,
    aside: &str,
) -> anyhow::Result<()> {
    let mut command = Command::new("pg_restore");
    command
        .args([
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--dbname",
        ])
        .arg(url)
        .arg(dump);
    if let Err(error) = run_client(command, password, "pg_restore") {
        Store::connect(url, password)
            .await?
            .put_back(aside)
            .await
            .with_context(|| format!("{error:#}; putting schema {aside} back also failed"))?;
        return Err(error.context("nothing was restored; the database is as it was"));
    }
    Ok(())
}

/// Writes the archive's configuration and certificates (unpacked in
/// `unpacked`) into `dir`, under their own names, never over a file.
fn write_files(manifest: &Manifest, unpacked: &Path, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let mut written = Vec::new();
    for saved in &manifest.files {
        let name = saved.was.file_name().unwrap_or_default();
        let to = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&to)
            .with_context(|| format!("cannot write {} (it must not exist yet)", to.display()))?;
        file.write_all(&std::fs::read(unpacked.join(&saved.entry))?)?;
        written.push(to);
    }
    Ok(written)
}

/// Migrates the restored database and makes its devices `unknown`.
async fn forget_statuses(
    settings: &Settings,
    password: Option<&str>,
    reason: &str,
) -> anyhow::Result<usize> {
    let store = Store::connect(&settings.database, password).await?;
    store
        .migrate()
        .await
        .context("migrating the restored database")?;
    let now_ms = crate::time::now_ms();
    Ok(store
        .forget_statuses(reason, &format!("restore:{now_ms}"), now_ms)
        .await?)
}
