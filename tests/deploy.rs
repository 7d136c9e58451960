//! Checks of `deploy/`: every configuration the guide ships is accepted by
//! `gossamer run --check`, the Kubernetes and compose manifests are valid YAML of the
//! expected kinds and agree with each other, the systemd unit and Dockerfile keep their
//! hardening, and the Grafana dashboard queries only metrics a node exports.
//! (`deploy/check.sh` adds `systemd-analyze verify` and the local three-node cluster.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use gossamer::core::id::ClusterName;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(rel: &str) -> String {
    let p = deploy().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not YAML: {e}"))
}

fn kinds(docs: &[Yaml]) -> Vec<&str> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or("?"))
        .collect()
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("expected a list, found {y:?}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// Runs `gossamer run ARGS... --check`; returns stdout, panicking with stderr on failure.
fn run_check(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gossamer"))
        .args(args)
        .arg("--check")
        .output()
        .expect("run the gossamer binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gossamer {} --check failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("configuration OK\n"), "{stdout}");
    stdout
}

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

fn toml_table(p: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn deploy_k8s_manifests_are_yaml_of_the_expected_kinds() {
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("k8s/configmap.yaml", vec!["ConfigMap"]),
        ("k8s/service.yaml", vec!["Service"]),
        ("k8s/statefulset.yaml", vec!["StatefulSet"]),
        ("k8s/pdb.yaml", vec!["PodDisruptionBudget"]),
        ("k8s/secret.example.yaml", vec!["Secret", "Secret"]),
        ("k8s/kustomization.yaml", vec!["Kustomization"]),
    ]);
    let on_disk: BTreeSet<String> = std::fs::read_dir(deploy().join("k8s"))
        .unwrap()
        .map(|e| format!("k8s/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let listed: BTreeSet<String> = expected.keys().map(|k| k.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "a manifest without a check, or a check without a file"
    );
    for (file, want) in &expected {
        let docs = yaml_docs(file);
        assert_eq!(kinds(&docs), *want, "{file}");
        for d in &docs {
            assert!(d["apiVersion"].as_str().is_some(), "{file}: apiVersion");
            if d["kind"].as_str() != Some("Kustomization") {
                assert!(d["metadata"]["name"].as_str().is_some(), "{file}: name");
            }
        }
    }

    // The kustomization applies everything but the Secret template.
    let k = &yaml_docs("k8s/kustomization.yaml")[0];
    let resources: BTreeSet<String> = strings(&k["resources"])
        .into_iter()
        .map(|r| format!("k8s/{r}"))
        .collect();
    let mut applied = listed.clone();
    applied.remove("k8s/secret.example.yaml");
    applied.remove("k8s/kustomization.yaml");
    assert_eq!(resources, applied);

    // The headless Service publishes not-ready pods and carries QUIC over UDP.
    let svc = &yaml_docs("k8s/service.yaml")[0];
    assert_eq!(svc["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        svc["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let quic = svc["spec"]["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("quic"))
        .expect("a quic port");
    assert_eq!(quic["protocol"].as_str(), Some("UDP"));

    // The StatefulSet is governed by that Service and selects its own pods.
    let sts = &yaml_docs("k8s/statefulset.yaml")[0];
    let spec = &sts["spec"];
    assert_eq!(spec["serviceName"], svc["metadata"]["name"]);
    assert_eq!(
        spec["selector"]["matchLabels"],
        spec["template"]["metadata"]["labels"]
    );
    assert_eq!(
        svc["spec"]["selector"],
        spec["template"]["metadata"]["labels"]
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    // Certificates come from the Secret the template describes, through the init container.
    let secret_name = pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .expect("a secret volume");
    let secrets = yaml_docs("k8s/secret.example.yaml");
    let cert_secret = secrets
        .iter()
        .find(|s| s["metadata"]["name"].as_str() == Some(secret_name))
        .expect("the secret template names the mounted secret");
    for key in ["ca.pem", "gossamer-0.pem", "gossamer-0.key"] {
        let v = cert_secret["stringData"][key]
            .as_str()
            .unwrap_or_else(|| panic!("template key {key}"));
        assert!(v.starts_with("REPLACE"), "{key} must stay a placeholder");
    }
    let token_secret = container["env"]
        .as_vec()
        .unwrap()
        .iter()
        .find_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
        .expect("the admin token comes from a Secret");
    assert!(secrets
        .iter()
        .any(|s| s["metadata"]["name"].as_str() == Some(token_secret)));
}

/// The ConfigMap's TOML with the StatefulSet's flags, as pod `gossamer-1` would run it.
#[test]
fn deploy_k8s_pod_configuration_passes_run_check() {
    let cm = &yaml_docs("k8s/configmap.yaml")[0];
    let toml_text = cm["data"]["gossamer.toml"].as_str().expect("gossamer.toml");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gossamer.toml");
    std::fs::write(&cfg, toml_text).unwrap();

    let sts = &yaml_docs("k8s/statefulset.yaml")[0];
    let replicas = sts["spec"]["replicas"].as_i64().unwrap();
    let pod = &sts["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let mounts = container["volumeMounts"].as_vec().unwrap();
    let config_mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("config"))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap();
    let args: Vec<String> = strings(&container["args"])
        .into_iter()
        .map(|a| {
            a.replace("$(POD_NAME)", "gossamer-1")
                .replace("$(POD_NAMESPACE)", "default")
                .replace("$(GOSSAMER_ADMIN_TOKEN)", "test-token")
                .replace(
                    &format!("{config_mount}/gossamer.toml"),
                    cfg.to_str().unwrap(),
                )
        })
        .collect();
    assert_eq!(args[0], "run");
    assert!(
        args.iter().all(|a| !a.contains("$(")),
        "unexpanded: {args:?}"
    );
    let out = run_check(&args);
    assert!(out.contains("  node:      gossamer-1\n"), "{out}");
    assert!(
        out.contains("  advertise: gossamer-1.gossamer.default.svc.cluster.local:7946\n"),
        "{out}"
    );
    assert!(out.contains("(token required)"), "{out}");

    // Seeds are the pods behind the headless Service, one per replica.
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let seeds: Vec<&str> = table["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..replicas)
        .map(|i| format!("gossamer-{i}.gossamer:7946"))
        .collect();
    assert_eq!(seeds, want);
    // The node reads its certificates where the init container puts them.
    let certs_mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("certs"))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap();
    assert_eq!(table["certs"].as_str(), Some(certs_mount));
    let init = pod["initContainers"][0]["args"][0].as_str().unwrap();
    assert!(init.contains(certs_mount) && init.contains("$POD_NAME.key"));
}

/// The array index or map key `token` of a JSON pointer names in `y`.
fn pointer_child<'a>(y: &'a mut Yaml, token: &str) -> &'a mut Yaml {
    match y {
        Yaml::Array(a) => {
            let i: usize = token.parse().unwrap_or_else(|_| panic!("index {token:?}"));
            assert!(i < a.len(), "index {i} past the end ({} items)", a.len());
            &mut a[i]
        }
        Yaml::Hash(h) => h
            .get_mut(&Yaml::String(token.to_string()))
            .unwrap_or_else(|| panic!("no key {token:?}")),
        other => panic!("{token:?} inside a scalar {other:?}"),
    }
}

/// Applies a JSON patch (RFC 6902: add, remove, replace) as kustomize does; panics when a
/// path does not exist, as kustomize fails.
fn json_patch(doc: &mut Yaml, ops: &[Yaml]) {
    for op in ops {
        let path = op["path"].as_str().expect("path");
        let mut tokens: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let last = tokens.pop().unwrap();
        let mut parent = &mut *doc;
        for t in tokens {
            parent = pointer_child(parent, t);
        }
        let value = op["value"].clone();
        match (op["op"].as_str().expect("op"), parent) {
            ("remove", Yaml::Array(a)) => {
                a.remove(last.parse::<usize>().unwrap());
            }
            ("remove", Yaml::Hash(h)) => {
                assert!(h.remove(&Yaml::String(last.into())).is_some(), "{path}");
            }
            ("replace", p) => *pointer_child(p, last) = value,
            ("add", Yaml::Array(a)) if last == "-" => a.push(value),
            ("add", Yaml::Hash(h)) => {
                h.insert(Yaml::String(last.into()), value);
            }
            (o, _) => panic!("{path}: op {o} not supported here"),
        }
    }
}

/// deploy/k8s-cert-manager: the base (deploy/k8s) with each pod's certificate from cert-manager's
/// csi-driver, mounted directly (no init container) and read through --cert-file etc.
#[test]
fn deploy_k8s_cert_manager_overlay_mounts_each_pods_own_certificate() {
    let dir = "k8s-cert-manager";
    let expected: BTreeMap<String, Vec<&str>> = BTreeMap::from([
        (format!("{dir}/kustomization.yaml"), vec!["Kustomization"]),
        (format!("{dir}/issuer.yaml"), vec!["Issuer"]),
        (format!("{dir}/ca-secret.example.yaml"), vec!["Secret"]),
        (format!("{dir}/statefulset-patch.yaml"), vec!["?"]),
    ]);
    let on_disk: BTreeSet<String> = std::fs::read_dir(deploy().join(dir))
        .unwrap()
        .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(on_disk, expected.keys().cloned().collect());
    for (file, want) in &expected {
        assert_eq!(kinds(&yaml_docs(file)), *want, "{file}");
    }

    let k = &yaml_docs(&format!("{dir}/kustomization.yaml"))[0];
    assert_eq!(strings(&k["resources"]), vec!["../k8s", "issuer.yaml"]);
    let patch = &k["patches"][0];
    assert_eq!(patch["target"]["kind"].as_str(), Some("StatefulSet"));
    let ops_file = format!("{dir}/{}", patch["path"].as_str().unwrap());
    let ops = yaml_docs(&ops_file)[0]
        .as_vec()
        .expect("a JSON patch")
        .clone();
    let mut sts = yaml_docs("k8s/statefulset.yaml")[0].clone();
    assert_eq!(patch["target"]["name"], sts["metadata"]["name"]);
    json_patch(&mut sts, &ops);

    let pod = &sts["spec"]["template"]["spec"];
    assert!(pod["initContainers"].is_badvalue(), "no init copy");
    let volumes = pod["volumes"].as_vec().unwrap();
    assert!(
        volumes.iter().all(|v| v["secret"].is_badvalue()),
        "no Secret holds node keys: {volumes:?}"
    );
    let csi = volumes
        .iter()
        .find(|v| v["csi"]["driver"].as_str() == Some("csi.cert-manager.io"))
        .expect("a csi-driver volume");
    assert_eq!(csi["csi"]["readOnly"].as_bool(), Some(true));
    let attr = |k: &str| {
        csi["csi"]["volumeAttributes"][format!("csi.cert-manager.io/{k}").as_str()]
            .as_str()
            .unwrap_or_else(|| panic!("attribute {k}"))
            .to_string()
    };
    // Issued by the Issuer of this overlay, for the pod's own node id.
    let issuer = &yaml_docs(&format!("{dir}/issuer.yaml"))[0];
    assert_eq!(
        attr("issuer-name"),
        issuer["metadata"]["name"].as_str().unwrap()
    );
    assert_eq!(attr("issuer-kind"), "Issuer");
    let ca_secret = &yaml_docs(&format!("{dir}/ca-secret.example.yaml"))[0];
    assert_eq!(
        issuer["spec"]["ca"]["secretName"],
        ca_secret["metadata"]["name"]
    );
    assert_eq!(ca_secret["type"].as_str(), Some("kubernetes.io/tls"));
    for key in ["tls.crt", "tls.key"] {
        let v = ca_secret["stringData"][key].as_str().unwrap();
        assert!(v.starts_with("REPLACE"), "{key} must stay a placeholder");
    }
    let uri = attr("uri-sans");
    let cluster = uri
        .strip_prefix("gossamer://")
        .and_then(|r| r.strip_suffix("/${POD_NAME}"))
        .unwrap_or_else(|| panic!("uri-sans {uri:?} is not gossamer://<cluster>/${{POD_NAME}}"));
    assert!(ClusterName::new(cluster).is_ok(), "{cluster}");
    // A key that can sign writes, for both ends of mutual TLS.
    assert_eq!(attr("key-algorithm"), "ECDSA");
    assert_eq!(attr("key-size"), "256");
    let usages = attr("key-usages");
    for u in ["digital signature", "server auth", "client auth"] {
        assert!(
            usages.split(',').any(|x| x.trim() == u),
            "{u} missing: {usages}"
        );
    }
    let fs_group = pod["securityContext"]["fsGroup"].as_i64().unwrap();
    assert_eq!(attr("fs-group"), fs_group.to_string());

    // The container mounts it and names its files; the pod configuration passes --check.
    let container = &pod["containers"][0];
    let mounts = container["volumeMounts"].as_vec().unwrap();
    let mount_of = |name: &str| {
        mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("no mount of volume {name}"))
            .to_string()
    };
    let tls_mount = mount_of(csi["name"].as_str().unwrap());
    // Every volume is mounted once and every mount has its volume (a JSON patch that
    // addresses the wrong index breaks this).
    let volume_names: Vec<&str> = volumes
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mut mount_names: Vec<&str> = mounts.iter().map(|m| m["name"].as_str().unwrap()).collect();
    let claims: Vec<&str> = sts["spec"]["volumeClaimTemplates"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    mount_names.retain(|m| !claims.contains(m));
    let mut sorted = volume_names.clone();
    sorted.sort();
    mount_names.sort();
    assert_eq!(sorted, mount_names, "volumes {volume_names:?}");
    assert_eq!(
        volume_names,
        ["config", "tls", "certs"],
        "data comes from the claim template"
    );
    let args = strings(&container["args"]);
    for (flag, file) in [("cert", "tls.crt"), ("key", "tls.key"), ("ca", "ca.crt")] {
        let want = format!("--{flag}-file={tls_mount}/{file}");
        assert!(args.contains(&want), "{want} missing: {args:?}");
    }
    let cm = &yaml_docs("k8s/configmap.yaml")[0];
    let toml_text = cm["data"]["gossamer.toml"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gossamer.toml");
    std::fs::write(&cfg, toml_text).unwrap();
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.replace("$(POD_NAME)", "gossamer-2")
                .replace("$(POD_NAMESPACE)", "default")
                .replace("$(GOSSAMER_ADMIN_TOKEN)", "test-token")
                .replace(
                    &format!("{}/gossamer.toml", mount_of("config")),
                    cfg.to_str().unwrap(),
                )
        })
        .collect();
    let out = run_check(&args);
    assert!(
        out.contains(&format!(
            "  certs:     {tls_mount}/tls.crt (key {tls_mount}/tls.key, trust {tls_mount}/ca.crt)"
        )),
        "{out}"
    );
    // crl.pem and revoked.txt: the certs folder, now the optional ConfigMap.
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let certs_volume = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some("certs"))
        .unwrap();
    assert_eq!(table["certs"].as_str(), Some(mount_of("certs").as_str()));
    assert_eq!(certs_volume["configMap"]["optional"].as_bool(), Some(true));
}

#[test]
fn deploy_compose_cluster_passes_run_check() {
    let docs = yaml_docs("docker/docker-compose.yml");
    assert_eq!(docs.len(), 1);
    let services = docs[0]["services"].as_hash().expect("services");
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["certs", "node1", "node2", "node3"]);
    let volumes = docs[0]["volumes"].as_hash().expect("volumes");
    for name in ["node1", "node2", "node3"] {
        let s = &docs[0]["services"][name];
        assert_eq!(
            s["depends_on"]["certs"]["condition"].as_str(),
            Some("service_completed_successfully")
        );
        let args = strings(&s["command"]);
        let out = run_check(&args);
        assert!(out.contains(&format!("  node:      {name}\n")), "{out}");
        // Seeded from the two other nodes.
        let seeds: BTreeSet<String> = args
            .iter()
            .filter_map(|a| a.strip_prefix("--seed="))
            .map(|a| a.split(':').next().unwrap().to_string())
            .collect();
        let others: BTreeSet<String> = ["node1", "node2", "node3"]
            .into_iter()
            .filter(|n| *n != name)
            .map(String::from)
            .collect();
        assert_eq!(seeds, others, "{name}");
        for v in strings(&s["volumes"]) {
            let vol = v.split(':').next().unwrap();
            assert!(
                volumes.contains_key(&Yaml::String(vol.into())),
                "{name}: volume {vol} is not declared"
            );
        }
    }
    let init = docs[0]["services"]["certs"]["command"][0].as_str().unwrap();
    assert!(init.contains("gossamer certs init") && init.contains("gossamer certs issue"));
}

#[test]
fn deploy_example_configurations_pass_run_check() {
    // The local cluster of the guide.
    let local = toml_files("local");
    assert_eq!(local.len(), 3);
    for p in &local {
        run_check(&["run".into(), "--config".into(), p.display().to_string()]);
    }

    // Three datacenters, two nodes each, seeded across datacenters.
    let files = toml_files("examples/three-dc");
    let mut by_dc: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seeds = Vec::new();
    for p in &files {
        let out = run_check(&["run".into(), "--config".into(), p.display().to_string()]);
        let t = toml_table(p);
        let id = t["node_id"].as_str().unwrap().to_string();
        assert_eq!(
            p.file_stem().unwrap().to_str(),
            Some(id.as_str()),
            "file name = node id"
        );
        assert!(out.contains(&format!("  node:      {id}\n")), "{out}");
        assert_eq!(t["profile"].as_str(), Some("wan"), "{id}");
        let dc = t["dc"].as_str().unwrap().to_string();
        let node_seeds: Vec<String> = t["seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().split('.').next().unwrap().to_string())
            .collect();
        seeds.push((id.clone(), dc.clone(), node_seeds));
        by_dc.entry(dc).or_default().push(id);
    }
    assert_eq!(by_dc.len(), 3, "{by_dc:?}");
    assert!(by_dc.values().all(|v| v.len() >= 2), "{by_dc:?}");
    let dc_of: BTreeMap<&str, &str> = seeds
        .iter()
        .map(|(id, dc, _)| (id.as_str(), dc.as_str()))
        .collect();
    for (id, dc, s) in &seeds {
        let seed_dcs: BTreeSet<&str> = s
            .iter()
            .map(|n| {
                *dc_of
                    .get(n.as_str())
                    .unwrap_or_else(|| panic!("{id}: seed {n}"))
            })
            .collect();
        assert_eq!(
            seed_dcs.len(),
            3,
            "{id} ({dc}) must seed from every datacenter"
        );
        assert!(!s.contains(id), "{id} seeds itself");
    }
    // The certificate inventory covers exactly these nodes.
    let inventory: BTreeSet<String> = read("examples/three-dc/inventory.txt")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let nodes: BTreeSet<String> = dc_of.keys().map(|s| s.to_string()).collect();
    assert_eq!(inventory, nodes);
}

/// `Key=value` lines of a unit file (later lines of a key are kept in order).
fn unit_directives(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    out
}

#[test]
fn deploy_systemd_unit_keeps_its_sandbox() {
    let unit = unit_directives(&read("systemd/gossamer.service"));
    let one = |k: &str| -> &str {
        let v = unit.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(v.len(), 1, "{k} set more than once");
        &v[0]
    };
    assert!(one("ExecStart").ends_with(" run --config /etc/gossamer/gossamer.toml"));
    assert!(one("ExecReload").contains("-HUP $MAINPID"));
    for (k, v) in [
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("StateDirectory", "gossamer"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    assert_eq!(
        unit["SystemCallFilter"],
        ["@system-service", "~@privileged @resources"]
    );
    let user = one("User");
    assert!(!user.is_empty() && user != "root");
    // The account the unit runs as is the one the sysusers entry creates.
    let sysusers = read("systemd/gossamer.sysusers");
    assert!(sysusers
        .lines()
        .any(|l| l.starts_with(&format!("u {user} "))));
}

#[test]
fn deploy_dockerfile_builds_a_non_root_image() {
    let text = read("docker/Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].starts_with("FROM rust:1-bookworm AS "),
        "{}",
        froms[0]
    );
    assert_eq!(froms[1], "FROM debian:bookworm-slim");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(text.lines().any(|l| l == "EXPOSE 7946/udp"));
    let ignore = read("docker/Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l == "target"));
}

/// Names in `text` that look like gossamer metrics.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("gossamer_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Metric names that `queries` use but the `/metrics` text `exposition` does not serve:
/// the sample names of its families, as their `# TYPE` lines declare them (a family may
/// have no series yet, e.g. RTTs on a node alone).
fn unknown_metrics(queries: &[String], exposition: &str) -> Vec<String> {
    let mut served = BTreeSet::new();
    for line in exposition.lines() {
        let Some(decl) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = decl.split_once(' ').expect("# TYPE <name> <type>");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "gauge" => &[""],
            other => panic!("{family}: unexpected metric type {other}"),
        };
        served.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    }
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    used.difference(&served).cloned().collect()
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_grafana_dashboard_queries_exported_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("grafana/gossamer-dashboard.json")).expect("valid JSON");
    let panels = dash["panels"].as_array().expect("panels");
    let ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids repeat");
    let mut queries = Vec::new();
    exprs(&dash, &mut queries);
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();

    // What a running node serves on /metrics.
    let cluster = gossamer::local::LocalCluster::start_durable(
        1,
        0,
        gossamer::core::Config::local(),
        None,
        true,
    )
    .await
    .unwrap();
    let admin = cluster.admin_addr(&cluster.nodes[0]).expect("admin API");
    let client = gossamer::admin::client::AdminClient::new(admin.to_string(), None);
    let exposition = client.metrics().await;
    cluster.shutdown().await;
    let exposition = exposition.expect("GET /metrics");
    let unknown = unknown_metrics(&queries, &exposition);
    assert!(
        unknown.is_empty(),
        "dashboard queries metrics /metrics does not serve: {unknown:?}"
    );
    // The check can fail: a name the node does not serve is reported.
    let mut bogus = queries.clone();
    bogus.push("rate(gossamer_no_such_metric_total[5m])".to_string());
    assert_eq!(
        unknown_metrics(&bogus, &exposition),
        ["gossamer_no_such_metric_total"]
    );
    for needed in [
        "gossamer_members",
        "gossamer_members_by_dc",
        "gossamer_datagram_bytes_sent_total",
        "gossamer_datagrams_sent_total",
        "gossamer_conflicts_total",
        "gossamer_datagrams_dropped_total",
        "gossamer_broadcasts_dropped_total",
        "gossamer_sync_duration_seconds_bucket",
        "gossamer_dc_rtt_mean_seconds",
        "gossamer_suspicions_total",
        "gossamer_deaths_total",
        "gossamer_health_score",
        "gossamer_cert_expiry_seconds",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    // Every query goes through the data source variable.
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
}

#[test]
fn deploy_commits_no_private_key() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "run") {
                continue; // deploy/local/run: the local cluster's ignored state
            }
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&deploy(), &mut files);
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(
            !text.contains("PRIVATE KEY-----"),
            "{} holds a private key",
            f.display()
        );
        assert!(f.extension().is_none_or(|x| x != "key"), "{}", f.display());
    }
}
