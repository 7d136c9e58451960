//! A node whose certificate comes from a Kubernetes volume, as cert-manager provides it
//! (its csi-driver, or a `kubernetes.io/tls` Secret): `tls.crt` holds the certificate then
//! its chain (older cert-manager versions include the root, the case tested), `tls.key` an `EC PRIVATE KEY` (SEC1, cert-manager's default
//! encoding), `ca.crt` the issuing CA. The kubelet (and csi-driver's storage) replaces such
//! a volume's contents with an atomic symlink flip: the visible names are symlinks into
//! `..data`, itself a symlink to a hidden timestamped folder; an update writes a new folder,
//! points `..data_tmp` at it, renames that over `..data`, then deletes the old folder. The
//! visible paths themselves never change, so the node must follow the links to notice.
//!
//! Traffic stays on 127.0.0.1; every wait has a deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gossamer::core::id::{ClusterName, NodeId};
use gossamer::core::Config;
use gossamer::identity::{self, PemPair};
use gossamer::local::wait_for;
use gossamer::node::{Node, NodeConfig};

const DEADLINE: Duration = Duration::from_secs(20);

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// Splits one DER tag-length-value off the front of `der`: (tag, value, rest).
fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (der[0], der[1] as usize);
    let (len, start) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, 2 + n)
    };
    (tag, &der[start..start + len], &der[start + len..])
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, b)| a | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `key_pem` (PKCS#8, as gossamer issues it) re-encoded as SEC1, `BEGIN EC PRIVATE KEY`:
/// what cert-manager writes for an ECDSA key with its default `encoding: PKCS1`.
fn sec1_pem(key_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let (_, info, _) = tlv(pkcs8.secret_pkcs8_der());
    let (_, _version, rest) = tlv(info);
    let (_, _algorithm, rest) = tlv(rest);
    let (tag, sec1, _) = tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 privateKey is an OCTET STRING");
    let b64 = base64(sec1);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// A volume written the way kubelet's AtomicWriter writes Secret, ConfigMap and projected
/// volumes (and cert-manager's csi-lib its volumes).
struct AtomicVolume {
    dir: PathBuf,
    generation: u32,
}

impl AtomicVolume {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        Self {
            dir: dir.to_path_buf(),
            generation: 0,
        }
    }

    /// The hidden folder `..data` points at now.
    fn current(&self) -> Option<PathBuf> {
        std::fs::read_link(self.dir.join("..data"))
            .ok()
            .map(|t| self.dir.join(t))
    }

    /// Replaces the whole payload at once. With `same_mtime`, the new files get the
    /// modification times of the files they replace, so that nothing but the symlink
    /// target tells the new payload apart (a renewal can also keep the size).
    fn write(&mut self, files: &[(&str, &str)], same_mtime: bool) {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let old = self.current();
        self.generation += 1;
        let name = format!(
            "..2026_12_06_00_00_0{}.{}",
            self.generation,
            std::process::id()
        );
        let new = self.dir.join(&name);
        std::fs::create_dir(&new).unwrap();
        for (file, text) in files {
            let p = new.join(file);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let (true, Some(old)) = (same_mtime, &old) {
                let before = std::fs::metadata(old.join(file))
                    .unwrap()
                    .modified()
                    .unwrap();
                let f = std::fs::File::options().write(true).open(&p).unwrap();
                f.set_modified(before).unwrap();
            }
        }
        let tmp = self.dir.join("..data_tmp");
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (file, _) in files {
            let visible = self.dir.join(file);
            if std::fs::symlink_metadata(&visible).is_err() {
                symlink(Path::new("..data").join(file), &visible).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

/// The files a cert-manager CA issuer gives a pod: the certificate then the CA in
/// `tls.crt`, a SEC1 key, the CA alone in `ca.crt`.
fn cert_manager_files(ca: &PemPair, leaf: &PemPair) -> Vec<(&'static str, String)> {
    vec![
        ("tls.crt", format!("{}{}", leaf.cert_pem, ca.cert_pem)),
        ("tls.key", sec1_pem(&leaf.key_pem)),
        ("ca.crt", ca.cert_pem.clone()),
    ]
}

fn as_refs<'a>(files: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    files.iter().map(|(n, t)| (*n, t.as_str())).collect()
}

fn issue(ca: &PemPair, id: &str) -> PemPair {
    identity::issue_node(
        &ca.cert_pem,
        &ca.key_pem,
        &node(id),
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        &[],
        30,
    )
    .unwrap()
}

fn serial_of(pair: &PemPair) -> String {
    identity::inspect_pem(&pair.cert_pem, "cert").unwrap()[0]
        .serial
        .clone()
}

fn config(id: &str, dir: &Path, seeds: Vec<String>) -> NodeConfig {
    let mut cfg = NodeConfig::new(
        node(id),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        dir.to_path_buf(),
    );
    cfg.seeds = seeds;
    cfg.gossip = Config::local();
    cfg.security.cert_poll_interval_ms = 50;
    cfg.security.reload_on_sighup = false;
    cfg
}

/// Writes `key` at `writer` and waits until `reader` holds it.
async fn replicates(writer: &Node, reader: &Node, key: &str) {
    writer.set(key, key.as_bytes().to_vec()).unwrap();
    let (ok, _) = wait_for(DEADLINE, || {
        reader.get(key).map(|e| e.value).as_deref() == Some(key.as_bytes())
    })
    .await;
    assert!(
        ok,
        "{key:?} written by {} did not reach {}",
        writer.id(),
        reader.id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cert_manager_volume_is_used_as_is_and_reloaded_on_its_symlink_flip() {
    let root = tempfile::tempdir().unwrap();
    let ca = identity::generate_ca(&ClusterName::new("prod").unwrap(), 30).unwrap();

    // n1: a plain certificate folder.
    let plain = root.path().join("n1");
    std::fs::create_dir_all(&plain).unwrap();
    let n1_pair = issue(&ca, "n1");
    std::fs::write(plain.join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(plain.join("n1.pem"), &n1_pair.cert_pem).unwrap();
    std::fs::write(plain.join("n1.key"), &n1_pair.key_pem).unwrap();
    let n1 = Node::start(config("n1", &plain, vec![])).await.unwrap();

    // gossamer-1: the volume, read through its file names. Signed writes are on (the
    // default), so the SEC1 key must also serve ring for signing.
    let mut vol = AtomicVolume::new(&root.path().join("tls"));
    let first = issue(&ca, "gossamer-1");
    vol.write(&as_refs(&cert_manager_files(&ca, &first)), false);
    let mut cfg = config(
        "gossamer-1",
        &vol.dir,
        vec![n1.advertise_addr().to_string()],
    );
    cfg.cert_file = Some("tls.crt".into());
    cfg.key_file = Some("tls.key".into());
    cfg.ca_file = Some("ca.crt".into());
    assert!(cfg.security.signed_writes);
    let k = Node::start(cfg).await.unwrap();
    assert_eq!(k.certificate_status().serial, serial_of(&first));
    let (ok, _) = wait_for(DEADLINE, || n1.alive_count() == 2 && k.alive_count() == 2).await;
    assert!(ok, "the two nodes did not see each other");
    // Its writes verify at n1: the chain it presents and publishes ends in the root.
    replicates(&k, &n1, "before-renewal").await;
    replicates(&n1, &k, "from-n1").await;

    // cert-manager renews: a new key and certificate, swapped in by the symlink flip, with
    // the old files' modification times.
    let renewed = issue(&ca, "gossamer-1");
    let old_folder = vol.current().unwrap();
    vol.write(&as_refs(&cert_manager_files(&ca, &renewed)), true);
    assert!(
        !old_folder.exists(),
        "the writer removes the previous payload"
    );
    assert!(std::fs::symlink_metadata(vol.dir.join("tls.crt"))
        .unwrap()
        .file_type()
        .is_symlink());
    let want = serial_of(&renewed);
    let (ok, t) = wait_for(DEADLINE, || k.certificate_status().serial == want).await;
    assert!(
        ok,
        "the flipped volume was not picked up: {:?}",
        k.certificate_status()
    );
    println!("symlink flip picked up in {t:?}");
    let status = k.certificate_status();
    assert_eq!(status.reloads_failed, 0, "{:?}", status.last_error);
    assert_eq!(status.reloads_ok, 1);

    // The node keeps going with its new key: new connections (n1 checks the new chain) and
    // new writes (signed with the new key) work.
    assert!(n1.close_peer_connections(&k.id()) > 0);
    replicates(&k, &n1, "after-renewal").await;
    assert_eq!(n1.certificate_status().reloads_failed, 0);
    // Many poll intervals later, the one flip was loaded once.
    assert_eq!(k.certificate_status().reloads_ok, 1);

    k.shutdown().await;
    n1.shutdown().await;
}
