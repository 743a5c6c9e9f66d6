//! TLS termination: the certificate store (one folder per name under `tls.certs_dir`), SNI →
//! certificate selection for rustls (exact, then wildcard one label up, then default), hot swap
//! of the store, and SNI capture for the request phase (strict SNI / 421).
//!
//! Selection never allocates certificate material per handshake: every entry is an
//! `Arc<CertifiedKey>` built when the store is (re)loaded.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pemfile::Item;
use tokio::sync::mpsc;

use crate::atomic_file::write_atomic;
use crate::metrics::Metrics;

/// Folder name of the default certificate.
pub const DEFAULT_FOLDER: &str = "_default";
/// Folder-name prefix of a wildcard certificate: `_wildcard.example.com` serves `*.example.com`.
pub const WILDCARD_PREFIX: &str = "_wildcard.";

/// Why a certificate folder was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{folder}: {message}")]
    Invalid { folder: String, message: String },
}

/// One loaded certificate.
#[derive(Debug, Clone)]
pub struct CertEntry {
    pub folder: String,
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf, unix seconds.
    pub not_after: i64,
    pub not_before: i64,
    /// Serial of the leaf, hex.
    pub serial: String,
    pub sans: Vec<String>,
}

/// One immutable generation of the store.
#[derive(Debug, Default)]
struct CertSet {
    /// By folder name (also the exact host name).
    entries: BTreeMap<String, CertEntry>,
    exact: HashMap<Box<str>, Arc<CertifiedKey>, foldhash::fast::RandomState>,
    /// By the parent domain of the wildcard (`example.com` for `*.example.com`).
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>, foldhash::fast::RandomState>,
    default: Option<Arc<CertifiedKey>>,
}

/// The certificate store: folders on disk, swapped as one unit.
pub struct CertStore {
    dir: PathBuf,
    current: ArcSwap<CertSet>,
    /// Self-signed fallback, generated once at start when there is no `_default` folder.
    generated_default: Arc<CertifiedKey>,
    metrics: Metrics,
    lock: Mutex<()>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM chain + key and checks that they belong together.
pub fn load_certified_key(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(CertifiedKey, LeafInfo), String> {
    let mut certs = Vec::new();
    for item in rustls_pemfile::certs(&mut &chain_pem[..]) {
        certs.push(item.map_err(|e| format!("fullchain.pem: {e}"))?);
    }
    if certs.is_empty() {
        return Err("fullchain.pem: no certificate".into());
    }
    let mut key = None;
    // Skip non-key blocks (e.g. `EC PARAMETERS` before an EC key); the first key wins.
    for item in rustls_pemfile::read_all(&mut &key_pem[..]) {
        match item.map_err(|e| format!("key.pem: {e}"))? {
            Item::Pkcs8Key(k) => key = Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k)),
            Item::Pkcs1Key(k) => key = Some(rustls::pki_types::PrivateKeyDer::Pkcs1(k)),
            Item::Sec1Key(k) => key = Some(rustls::pki_types::PrivateKeyDer::Sec1(k)),
            _ => continue,
        }
        break;
    }
    let key = key.ok_or("key.pem: no private key")?;
    let info = leaf_info(&certs[0]).map_err(|e| format!("fullchain.pem: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| format!("key.pem does not match the certificate or is unusable: {e}"))?;
    Ok((ck, info))
}

/// Facts of a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub serial: String,
    pub sans: Vec<String>,
}

pub fn leaf_info(der: &[u8]) -> Result<LeafInfo, String> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            if let GeneralName::DNSName(d) = name {
                sans.push(d.to_string());
            }
        }
    }
    Ok(LeafInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.raw_serial_as_string(),
        sans,
    })
}

fn load_folder(path: &Path, folder: &str) -> Result<CertEntry, CertError> {
    let invalid = |message: String| CertError::Invalid {
        folder: folder.to_string(),
        message,
    };
    let chain = std::fs::read(path.join("fullchain.pem"))
        .map_err(|e| invalid(format!("fullchain.pem: {e}")))?;
    let key_path = path.join("key.pem");
    let key = std::fs::read(&key_path).map_err(|e| invalid(format!("key.pem: {e}")))?;
    warn_if_key_readable(&key_path, folder);
    let (ck, info) = load_certified_key(&chain, &key).map_err(invalid)?;
    Ok(CertEntry {
        folder: folder.to_string(),
        key: Arc::new(ck),
        not_after: info.not_after,
        not_before: info.not_before,
        serial: info.serial,
        sans: info.sans,
    })
}

fn warn_if_key_readable(path: &Path, folder: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                folder,
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "key.pem is readable by group or others; expected 0600"
            );
        }
    }
}

/// A self-signed certificate for `localhost` and the base domains, so a fresh `run` serves TLS.
pub fn self_signed(names: &[String]) -> Result<CertifiedKey, String> {
    let mut sans = vec!["localhost".to_string()];
    for n in names {
        sans.push(n.clone());
        sans.push(format!("*.{n}"));
    }
    sans.sort();
    sans.dedup();
    let ck = rcgen::generate_simple_self_signed(sans).map_err(|e| e.to_string())?;
    let chain = ck.cert.pem();
    let key = ck.key_pair.serialize_pem();
    load_certified_key(chain.as_bytes(), key.as_bytes()).map(|(c, _)| c)
}

impl CertStore {
    /// Loads every folder of `dir`; a missing dir is an empty store (the generated default
    /// serves). Folder errors are logged and skipped.
    pub fn open(
        dir: PathBuf,
        base_domains: &[String],
        metrics: Metrics,
    ) -> Result<Arc<Self>, String> {
        let generated_default = Arc::new(self_signed(base_domains)?);
        let store = Arc::new(Self {
            dir,
            current: ArcSwap::from_pointee(CertSet::default()),
            generated_default,
            metrics,
            lock: Mutex::new(()),
        });
        store.reload();
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the folders. A folder that fails to load keeps its previous certificate (if it
    /// had one); a folder that disappeared is dropped. Returns the errors.
    pub fn reload(&self) -> Vec<CertError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.current.load_full();
        let mut errors = Vec::new();
        let mut entries = BTreeMap::new();
        let folders = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(name, _)| !name.starts_with('.') && name != "acme")
                .collect::<Vec<_>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read certificate dir; keeping current certificates");
                return vec![CertError::Invalid {
                    folder: self.dir.display().to_string(),
                    message: e.to_string(),
                }];
            }
        };
        for (name, path) in folders {
            if !(path.join("fullchain.pem").exists() || path.join("key.pem").exists()) {
                continue; // not a certificate folder
            }
            match load_folder(&path, &name) {
                Ok(entry) => {
                    entries.insert(name, entry);
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate rejected; the previous one for this name keeps serving");
                    if let Some(old) = previous.entries.get(&name) {
                        entries.insert(name, old.clone());
                    }
                    errors.push(e);
                }
            }
        }
        let next = build_set(entries);
        let changed = next.entries.len() != previous.entries.len()
            || next
                .entries
                .iter()
                .zip(previous.entries.iter())
                .any(|((a, ea), (b, eb))| a != b || ea.key.cert != eb.key.cert);
        self.publish_metrics(&previous, &next);
        if changed {
            tracing::info!(
                certificates = next.entries.len(),
                "certificate store updated"
            );
        }
        self.current.store(Arc::new(next));
        errors
    }

    /// Installs one certificate from PEM (ACME issuance): written to disk atomically, then
    /// swapped in.
    pub fn install(
        &self,
        folder: &str,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<CertEntry, CertError> {
        let invalid = |message: String| CertError::Invalid {
            folder: folder.to_string(),
            message,
        };
        load_certified_key(chain_pem, key_pem).map_err(&invalid)?;
        let path = self.dir.join(folder);
        write_atomic(&path.join("key.pem"), key_pem, 0o600).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&path.join("fullchain.pem"), chain_pem, 0o644)
            .map_err(|e| invalid(e.to_string()))?;
        self.reload();
        self.entry(folder)
            .ok_or_else(|| invalid("not loaded after install".into()))
    }

    fn publish_metrics(&self, previous: &CertSet, next: &CertSet) {
        for name in previous.entries.keys() {
            if !next.entries.contains_key(name) {
                let _ = self.metrics.certificate_expiry.remove_label_values(&[name]);
            }
        }
        for (name, e) in &next.entries {
            self.metrics
                .certificate_expiry
                .with_label_values(&[name])
                .set(e.not_after as f64);
        }
        self.metrics.certificates.set(next.entries.len() as i64);
    }

    /// The certificate for an SNI name (already lower case): exact, wildcard, default.
    pub fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let set = self.current.load();
        if let Some(name) = sni {
            if let Some(k) = set.exact.get(name) {
                return k.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = set.wildcard.get(parent) {
                    return k.clone();
                }
            }
        }
        set.default
            .clone()
            .unwrap_or_else(|| self.generated_default.clone())
    }

    pub fn entry(&self, folder: &str) -> Option<CertEntry> {
        self.current.load().entries.get(folder).cloned()
    }
}

fn build_set(entries: BTreeMap<String, CertEntry>) -> CertSet {
    let mut set = CertSet::default();
    for (name, e) in &entries {
        if name == DEFAULT_FOLDER {
            set.default = Some(e.key.clone());
        } else if let Some(parent) = name.strip_prefix(WILDCARD_PREFIX) {
            set.wildcard
                .insert(parent.to_ascii_lowercase().into(), e.key.clone());
        } else {
            set.exact
                .insert(name.to_ascii_lowercase().into(), e.key.clone());
        }
    }
    set.entries = entries;
    set
}

/// The rustls resolver over the store.
#[derive(Debug)]
pub struct CertResolver {
    pub store: Arc<CertStore>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store
            .metrics
            .tls_handshakes
            .with_label_values(&["client_hello"])
            .inc();
        match hello.server_name() {
            // rustls hands over SNI as sent; names are matched in lower case without allocating
            // when already lower case (the usual case).
            Some(name) if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                Some(self.store.select(Some(&name.to_ascii_lowercase())))
            }
            other => Some(self.store.select(other)),
        }
    }
}

/// The SNI of a TLS connection, attached to the connection's digest for the request phase.
#[derive(Debug, Clone)]
pub struct Sni(pub Box<str>);

/// Post-handshake callback: counts the handshake and keeps the SNI.
pub struct SniCapture {
    pub metrics: Metrics,
}

#[async_trait]
impl TlsAccept for SniCapture {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.metrics
            .tls_handshakes
            .with_label_values(&["success"])
            .inc();
        tls.server_name().map(|n| {
            Arc::new(Sni(n.to_ascii_lowercase().into())) as Arc<dyn std::any::Any + Send + Sync>
        })
    }
}

/// Background service: watches the certificate dir and reloads the store (debounced).
pub struct CertWatchService {
    pub store: Arc<CertStore>,
    pub debounce: Duration,
}

#[async_trait]
impl BackgroundService for CertWatchService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let dir = self.store.dir.clone();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create certificate dir");
        }
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|ev| !ev.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| w.watch(&dir, RecursiveMode::Recursive).map(|()| w));
        let _watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(dir = %self.store.dir.display(), error = %e, "cannot watch certificate dir; certificates reload with SIGHUP or the admin API");
                let _ = shutdown.changed().await;
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                ev = rx.recv() => {
                    if ev.is_none() { return; }
                    while let Ok(Some(())) = tokio::time::timeout(self.debounce, rx.recv()).await {}
                    let store = self.store.clone();
                    let _ = tokio::task::spawn_blocking(move || store.reload()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::register(&prometheus::Registry::new()).unwrap()
    }

    fn write_cert(dir: &Path, folder: &str, names: &[&str]) -> String {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let p = dir.join(folder);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("fullchain.pem"), ck.cert.pem()).unwrap();
        write_atomic(
            &p.join("key.pem"),
            ck.key_pair.serialize_pem().as_bytes(),
            0o600,
        )
        .unwrap();
        ck.cert.pem()
    }

    fn leaf_sans(k: &CertifiedKey) -> Vec<String> {
        leaf_info(k.cert[0].as_ref()).unwrap().sans
    }

    #[test]
    fn selection_order_exact_wildcard_default() {
        let dir = tempfile::tempdir().unwrap();
        write_cert(dir.path(), "acme.localhost", &["acme.localhost"]);
        write_cert(dir.path(), "_wildcard.localhost", &["*.localhost"]);
        write_cert(dir.path(), "_default", &["default.invalid"]);
        let store = CertStore::open(dir.path().into(), &["localhost".into()], metrics()).unwrap();
        assert_eq!(
            leaf_sans(&store.select(Some("acme.localhost"))),
            vec!["acme.localhost"]
        );
        assert_eq!(
            leaf_sans(&store.select(Some("globex.localhost"))),
            vec!["*.localhost"]
        );
        // Wildcards cover one label only.
        assert_eq!(
            leaf_sans(&store.select(Some("a.b.localhost"))),
            vec!["default.invalid"]
        );
        assert_eq!(leaf_sans(&store.select(None)), vec!["default.invalid"]);
    }

    #[test]
    fn generated_default_when_store_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            CertStore::open(dir.path().join("missing"), &["localhost".into()], metrics()).unwrap();
        assert!(leaf_sans(&store.select(Some("x.localhost"))).contains(&"*.localhost".to_string()));
    }

    #[test]
    fn broken_replacement_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        write_cert(dir.path(), "acme.localhost", &["acme.localhost"]);
        let store = CertStore::open(dir.path().into(), &[], metrics()).unwrap();
        let before = store.select(Some("acme.localhost"));
        std::fs::write(dir.path().join("acme.localhost/fullchain.pem"), "garbage").unwrap();
        let errors = store.reload();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with("acme.localhost: "),
            "{}",
            errors[0]
        );
        assert_eq!(store.select(Some("acme.localhost")).cert, before.cert);

        // A key of another certificate is rejected too.
        let other = rcgen::generate_simple_self_signed(vec!["acme.localhost".to_string()]).unwrap();
        let good = rcgen::generate_simple_self_signed(vec!["acme.localhost".to_string()]).unwrap();
        std::fs::write(
            dir.path().join("acme.localhost/fullchain.pem"),
            good.cert.pem(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("acme.localhost/key.pem"),
            other.key_pair.serialize_pem(),
        )
        .unwrap();
        let errors = store.reload();
        assert!(
            errors[0].to_string().contains("does not match"),
            "{}",
            errors[0]
        );
        assert_eq!(store.select(Some("acme.localhost")).cert, before.cert);
    }
}
