//! Gated loading, shared by start-up, reload and polling: a source is read
//! (a file, capped at `model.max_bytes`, or a registry download, capped the
//! same) and becomes a [`ServingModel`] only through [`gate::load_gated`],
//! the one rule for what may be served.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::artifact::{
    open_regular, read_capped, ArtifactError, LoadedModel, MemoryEstimate, ModelMeta,
};
use crate::dataset::DatasetError;
use crate::gate::{self, GateError, GatePass, ServingRule};
use crate::mlflow::{fetch_model, MlflowClient, MlflowError, ModelVersion};
use crate::monitoring::ModelProfile;
use crate::settings::ModelSource;

use super::model_metrics::ModelSeries;

/// A model that passed validation and the gate.
pub struct ServingModel {
    /// Classifier and description.
    pub loaded: LoadedModel,
    /// The gate's verdict.
    pub gate: GatePass,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
    /// Where it came from (reloads without a path re-read it; polling
    /// watches it).
    pub source: ModelSource,
    /// The models directory, when a reload request named the file: re-reads
    /// stay confined beneath it.
    pub confined_to: Option<PathBuf>,
    /// What the source held when it was read: the file's sha256, or the
    /// registry version. A source whose fingerprint moves has changed.
    pub fingerprint: String,
    /// The registry version it was resolved to (`models:/` sources only).
    pub registry_version: Option<ModelVersion>,
    /// What remembered predictions need to know about this model.
    pub profile: Arc<ModelProfile>,
    /// Estimated bytes it keeps (vocabulary and scoring tables, and the
    /// decoded statistics of a schema-3 model): what it holds of
    /// `models.max_total_bytes`.
    pub resident_bytes: u64,
    /// Its per-document metric series, resolved once per load (detached,
    /// counting nowhere, until the repository publishes it).
    pub series: ModelSeries,
}

/// Which of the server's models a load is for: its name and slot (see
/// [`ModelProfile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelKey {
    /// The server's name for the model.
    pub name: String,
    /// Its slot among the server's models.
    pub slot: usize,
}

/// Decides, from a model's estimated resident bytes and before its tables
/// are built, whether it may load (the repository's memory budget); what
/// it returns is held until the load ends.
pub trait Admission: Send + 'static {
    /// What an admitted load holds (a reservation).
    type Hold: Grow + Send + 'static;
    /// Admits `resident_bytes`, or refuses the load.
    fn admit(self, resident_bytes: u64) -> Result<Self::Hold, LoadError>;
}

/// A held admission that can take more bytes once the load knows them
/// (the decoded statistics of a schema-3 model), or refuse the load.
pub trait Grow {
    /// Holds `bytes` more, or refuses the load.
    fn grow(&mut self, bytes: u64) -> Result<(), LoadError>;
}

impl Grow for () {
    fn grow(&mut self, _: u64) -> Result<(), LoadError> {
        Ok(())
    }
}

/// Admits every load (no budget).
pub struct AdmitAll;

impl Admission for AdmitAll {
    type Hold = ();
    fn admit(self, _: u64) -> Result<(), LoadError> {
        Ok(())
    }
}

/// Opens `name` inside `dir` without ever leaving it (`..`, absolute paths
/// and symlinks pointing out are refused), checked to be a regular file.
/// `None` for every refusal alike, so answers do not reveal whether a path
/// outside the directory exists.
pub fn open_beneath(dir: &Path, name: &str) -> Option<File> {
    if name.is_empty() || name.contains('\0') {
        return None;
    }
    let file = open_beneath_os(dir, name)?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// Linux: `openat2` with `RESOLVE_BENEATH`, so the kernel resolves the whole
/// name (every symlink included) in one step and refuses any step out of
/// `dir`. Kernels without it (before 5.6, or a seccomp filter that hides
/// it) fall back to [`open_beneath_fallback`].
#[cfg(target_os = "linux")]
fn open_beneath_os(dir: &Path, name: &str) -> Option<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let root = File::open(dir).ok()?;
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `open_how` is three integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: every pointer outlives the call: `c_name` is NUL-terminated,
    // `how` is a properly sized `open_how`; the kernel only reads them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c_name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a successful openat2 returns a new descriptor nobody else owns.
        return Some(unsafe { File::from_raw_fd(fd as i32) });
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // EXDEV: the name left `dir` — or went through an absolute symlink,
        // which RESOLVE_BENEATH refuses even when it points back inside
        // (`current.json -> /models/v3.json`); the fallback tells them apart.
        Some(libc::ENOSYS | libc::EPERM | libc::EXDEV) => open_beneath_fallback(dir, name),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn open_beneath_os(dir: &Path, name: &str) -> Option<File> {
    open_beneath_fallback(dir, name)
}

/// Without `openat2`: resolve the name, check it is inside `dir`, then open
/// the resolved path without following a symlink in its last component
/// (`O_NOFOLLOW`), so swapping the file for a symlink after the check fails
/// the open instead of leaving the directory; on Linux the open handle's own
/// path is checked again (a directory swapped on the way).
fn open_beneath_fallback(dir: &Path, name: &str) -> Option<File> {
    let root = dir.canonicalize().ok()?;
    let resolved = root.join(name).canonicalize().ok()?;
    if !resolved.starts_with(&root) {
        return None;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let file = options.open(resolved).ok()?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        if let Ok(actual) = std::fs::read_link(fd_path) {
            if !actual.starts_with(&root) {
                return None;
            }
        }
    }
    Some(file)
}

/// Why a model could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A reload named a path that is not a regular file inside the models
    /// directory (missing, outside it, or a device/FIFO/directory).
    #[error("path must name a regular model file inside the models directory")]
    Path,
    /// The artifact is invalid.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The gate rejected it.
    #[error(transparent)]
    Gate(GateError),
    /// The configured holdout file is unusable.
    #[error(transparent)]
    Holdout(#[from] DatasetError),
    /// The model registry could not be asked or did not provide the model.
    #[error(transparent)]
    Registry(#[from] MlflowError),
    /// Loading it would take the loaded models past `models.max_total_bytes`.
    #[error(
        "model {model} needs an estimated {needed} bytes, and the other loaded models hold {held} \
         of models.max_total_bytes ({max_total_bytes} bytes)"
    )]
    OverBudget {
        /// The model's name.
        model: String,
        /// Its estimated resident bytes.
        needed: u64,
        /// Bytes the other models hold (or are loading).
        held: u64,
        /// The budget.
        max_total_bytes: u64,
    },
}

impl From<GateError> for LoadError {
    /// An invalid artifact or an unreadable holdout keeps its own variant
    /// (and answer code); what is left is the gate's own verdict.
    fn from(e: GateError) -> Self {
        match e {
            GateError::Artifact(e) => Self::Artifact(e),
            GateError::HoldoutFile(e) => Self::Holdout(e),
            e => Self::Gate(e),
        }
    }
}

impl LoadError {
    /// A client-safe explanation: fixed text per cause, with no file paths,
    /// OS details or anything quoted from the artifact.
    pub fn public_message(&self) -> String {
        use ArtifactError as A;
        let fixed = match self {
            LoadError::Artifact(A::Io { source, .. }) => {
                return format!("model file cannot be read ({})", source.kind())
            }
            LoadError::Artifact(A::TooLarge { max_bytes, .. }) => {
                return format!("model file is larger than model.max_bytes ({max_bytes} bytes)")
            }
            LoadError::Artifact(A::NotRegularFile { .. }) => "model file is not a regular file",
            LoadError::Artifact(A::NotJson(_)) => "model file is not valid JSON",
            LoadError::Artifact(A::UnknownFormat { .. }) => "model file is not an nbserve artifact",
            LoadError::Artifact(A::UnsupportedSchema { .. }) => {
                "model file has a schema version this build does not read"
            }
            LoadError::Artifact(A::Schema(_)) => "model file does not match the artifact schema",
            LoadError::Artifact(A::ChecksumMismatch { .. }) => {
                "model file content does not match its checksum"
            }
            LoadError::Holdout(_) => "the configured holdout file cannot be used",
            LoadError::Registry(MlflowError::TooLarge { max_bytes, .. }) => {
                return format!(
                    "the registry's model file is larger than model.max_bytes ({max_bytes} bytes)"
                )
            }
            LoadError::Registry(_) => "the model registry did not provide the model",
            // Names and numbers only.
            LoadError::OverBudget { .. } => return self.to_string(),
            // Computed from counts and numbers, never from the file's text.
            other => return crate::server::extract::short(other.to_string()),
        };
        fixed.to_owned()
    }

    /// The full explanation for the log: capped, control characters
    /// escaped so a crafted file cannot forge log lines.
    pub fn log_message(&self) -> String {
        crate::server::extract::short(escape_controls(&self.to_string()))
    }
}

/// Escapes control characters (newlines, escape sequences) in `text`.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Loads and gates the model at `source` with `rule` — a file (read on the
/// blocking pool, so the async workers keep serving) or a `models:/` URI
/// resolved and downloaded through `registry`.
///
/// A file is opened once and read from that handle (a regular file, at most
/// `model.max_bytes`); with `confined_to`, it must lie beneath that
/// directory (see [`open_beneath`]).
pub async fn load_source(
    source: ModelSource,
    confined_to: Option<PathBuf>,
    rule: ServingRule,
    registry: Option<&MlflowClient>,
) -> Result<ServingModel, LoadError> {
    let key = ModelKey {
        name: crate::settings::source_name(&source).unwrap_or_default(),
        slot: 0,
    };
    let load = Load {
        source,
        confined_to,
        rule,
        key,
    };
    load.run(registry, AdmitAll).await.map(|(model, ())| model)
}

/// One load: what is read, where it may be, the rule it must pass, and
/// which model it is for.
pub struct Load {
    /// Where the artifact comes from.
    pub source: ModelSource,
    /// The directory a file must lie beneath, if any.
    pub confined_to: Option<PathBuf>,
    /// The rule it must pass.
    pub rule: ServingRule,
    /// The model it is for.
    pub key: ModelKey,
}

impl Load {
    /// Reads, admits (`admission`, before the tables are built) and gates
    /// the artifact; see [`load_source`]. One `model_load` span, at start-up
    /// and in every reload.
    #[tracing::instrument(level = "debug", name = "model_load", skip_all)]
    pub async fn run<A: Admission>(
        self,
        registry: Option<&MlflowClient>,
        admission: A,
    ) -> Result<(ServingModel, A::Hold), LoadError> {
        let Load {
            source,
            confined_to,
            rule,
            key,
        } = self;
        let downloaded = match &source {
            ModelSource::File(_) => None,
            ModelSource::Registry(uri) => Some(fetch_model(registry, uri, rule.max_bytes).await?),
        };
        tokio::task::spawn_blocking(move || {
            let result = match (downloaded, source) {
                (Some((version, bytes)), source) => {
                    serving_model(bytes, &rule, source, &key, admission).map(|(m, hold)| {
                        let m = ServingModel {
                            fingerprint: version.version.clone(),
                            registry_version: Some(version),
                            ..m
                        };
                        (m, hold)
                    })
                }
                (None, ModelSource::File(path)) => {
                    load_file(path, confined_to, &rule, &key, admission)
                }
                (None, ModelSource::Registry(_)) => {
                    unreachable!("a registry source is downloaded")
                }
            };
            release_freed_memory();
            result
        })
        .await
        .expect("model loading does not panic")
    }
}

/// The sha256 (hex) of file content: a file source's fingerprint.
pub fn content_fingerprint(bytes: &[u8]) -> String {
    crate::fsio::sha256_hex(bytes)
}

/// Loads and gates artifact `bytes` that came from no file (the fuzz
/// targets' way in: the rule every source goes through). Its source is
/// the file `name`; its fingerprint is the bytes' sha256.
pub fn load_gated_bytes(
    bytes: Vec<u8>,
    name: PathBuf,
    rule: &ServingRule,
) -> Result<ServingModel, LoadError> {
    let key = ModelKey {
        name: String::new(),
        slot: 0,
    };
    serving_model(bytes, rule, ModelSource::File(name), &key, AdmitAll).map(|(m, ())| m)
}

/// Opens the model file once; everything after reads from this handle, so
/// renaming or re-linking the name afterwards cannot change what loads.
pub fn open_model_file(path: &Path, confined_to: Option<&Path>) -> Result<File, LoadError> {
    match confined_to {
        None => Ok(open_regular(path)?),
        Some(dir) => {
            let name = path
                .strip_prefix(dir)
                .ok()
                .and_then(Path::to_str)
                .ok_or(LoadError::Path)?;
            open_beneath(dir, name).ok_or(LoadError::Path)
        }
    }
}

fn load_file<A: Admission>(
    path: PathBuf,
    confined_to: Option<PathBuf>,
    rule: &ServingRule,
    key: &ModelKey,
    admission: A,
) -> Result<(ServingModel, A::Hold), LoadError> {
    let file = open_model_file(&path, confined_to.as_deref())?;
    let bytes = read_capped(file, &path, rule.max_bytes)?;
    let (model, hold) = serving_model(bytes, rule, ModelSource::File(path), key, admission)?;
    let model = ServingModel {
        confined_to,
        ..model
    };
    Ok((model, hold))
}

/// Returns free memory held by the allocator (all arenas) to the OS.
///
/// A load frees its parsed data (every term string, the counts) among the
/// scoring tables that stay, and the allocator would keep those pages
/// resident in the loading thread's arena, where serving never reuses them;
/// so they are handed back after every load, accepted or not.
pub(crate) fn release_freed_memory() {
    // glibc's malloc returns freed pages only from the top of an arena, and
    // only past a threshold that freeing large blocks raises (a load frees
    // blocks big enough to raise it by megabytes); `malloc_trim` releases
    // every whole free page. Elsewhere this does nothing.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers; it only walks glibc's own
    // allocator state, under the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `bytes` through [`gate::load_gated`], described for serving. The
/// admission sees the model's estimated resident size before its tables
/// are built; bytes that cannot be estimated are not artifacts, and the
/// gate refuses them with its own answer.
fn serving_model<A: Admission>(
    bytes: Vec<u8>,
    rule: &ServingRule,
    source: ModelSource,
    key: &ModelKey,
    admission: A,
) -> Result<(ServingModel, A::Hold), LoadError> {
    let estimate = MemoryEstimate::of_bytes(&bytes).map_or(0, |e| e.resident);
    let mut hold = admission.admit(estimate)?;
    let servable = gate::load_gated(bytes, rule)?;
    // A schema-3 model's statistics (every term seen, per class) are only
    // sized once decoded: often larger than the model, and kept while it
    // is served, so they count too.
    let statistics = servable
        .model
        .statistics
        .as_ref()
        .map_or(0, |c| c.heap_bytes());
    hold.grow(statistics)?;
    let resident_bytes = estimate.saturating_add(statistics);
    let model = ServingModel {
        profile: Arc::new(profile(&servable.model.meta, key)),
        loaded: servable.model,
        gate: servable.pass,
        loaded_at: Utc::now(),
        source,
        confined_to: None,
        fingerprint: servable.sha256,
        registry_version: None,
        resident_bytes,
        series: ModelSeries::detached(),
    };
    Ok((model, hold))
}

/// The model's name and slot, version, classes and their share of the
/// training data.
fn profile(meta: &ModelMeta, key: &ModelKey) -> ModelProfile {
    let counts = &meta.dataset.class_counts;
    let total: u64 = counts.values().sum();
    let prior = meta
        .classes
        .iter()
        .map(|c| {
            let n = counts.get(c).copied().unwrap_or(0);
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        })
        .collect();
    ModelProfile {
        model: key.name.clone(),
        slot: key.slot,
        version: meta.model.version.clone(),
        classes: meta.classes.clone(),
        prior,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A models directory holding `a.json`, beside a `secret.json` outside it.
    fn layout() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        std::fs::write(models.join("a.json"), "{}").unwrap();
        std::fs::write(dir.path().join("secret.json"), "{}").unwrap();
        (dir, models)
    }

    fn refuses_escapes(open: fn(&Path, &str) -> Option<File>) {
        let (dir, models) = layout();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.json"), models.join("out.json"))
                .unwrap();
            std::os::unix::fs::symlink("/dev/zero", models.join("zero.json")).unwrap();
            std::os::unix::fs::symlink("a.json", models.join("in.json")).unwrap();
            std::os::unix::fs::symlink(models.join("a.json"), models.join("abs.json")).unwrap();
            assert!(open(&models, "in.json").is_some(), "symlink staying inside");
            assert!(open(&models, "abs.json").is_some(), "absolute, inside");
        }
        assert!(open(&models, "a.json").is_some());
        for bad in [
            "../secret.json",
            "out.json",
            "zero.json",
            "/etc/passwd",
            "",
            "nope.json",
            ".",
        ] {
            // The fallback leaves the regular-file check to its caller.
            let refused = !open(&models, bad).is_some_and(|f| f.metadata().unwrap().is_file());
            assert!(refused, "{bad:?} was opened");
        }
    }

    #[test]
    fn open_beneath_stays_inside_and_wants_a_regular_file() {
        refuses_escapes(open_beneath);
        let (_dir, models) = layout();
        assert!(open_beneath(&models, "a.json\0").is_none());
    }

    #[test]
    fn fallback_without_openat2_stays_inside_too() {
        refuses_escapes(open_beneath_fallback);
    }

    #[test]
    fn public_messages_do_not_quote_the_file() {
        let bytes = format!(
            "{{\"format\": \"{}\\n2026-01-01 INFO forged line\"}}",
            "x".repeat(10_000)
        );
        let e = LoadError::from(crate::Artifact::load_bytes(bytes.as_bytes()).unwrap_err());
        assert_eq!(e.public_message(), "model file is not an nbserve artifact");
        let logged = e.log_message();
        assert!(logged.len() < 300, "{} bytes", logged.len());
        assert!(!logged.contains('\n'), "{logged}");
        assert_eq!(escape_controls("a\nb\u{1b}[0m"), "a\\nb\\u{1b}[0m");
    }

    /// A `models:/` source whose artifact is past `model.max_bytes` is
    /// refused like a file source would be, with a message naming the cap.
    #[tokio::test]
    async fn a_registry_artifact_past_max_bytes_is_refused() {
        let client = crate::mlflow::fake::serve(vec![b' '; 4096]).await.client;
        let gate = crate::settings::GateSettings {
            min_f1_macro: 0.0,
            ..crate::Settings::default().gate
        };
        let load = |max_bytes| {
            let source = ModelSource::parse("models:/spam/3").unwrap();
            let rule = ServingRule {
                gate: gate.clone(),
                max_bytes,
            };
            load_source(source, None, rule, Some(&client))
        };
        let Err(e) = load(4095).await else {
            panic!("a 4096-byte artifact passed a 4095-byte cap");
        };
        assert!(
            matches!(
                e,
                LoadError::Registry(MlflowError::TooLarge {
                    max_bytes: 4095,
                    ..
                })
            ),
            "{e}"
        );
        assert_eq!(
            e.public_message(),
            "the registry's model file is larger than model.max_bytes (4095 bytes)"
        );
        // At the cap it is downloaded, and then refused only as not an artifact.
        let Err(e) = load(4096).await else {
            panic!("4096 spaces loaded as a model");
        };
        assert!(
            matches!(e, LoadError::Artifact(ArtifactError::NotJson(_))),
            "{e}"
        );
    }
}
