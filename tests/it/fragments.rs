//! Butane and Ignition fragments in profiles: each Butane feature against the config the
//! Butane spec says it becomes (`tests/fixtures/butane/`), `ignition-validate` on every
//! translation, the real Ignition's files stage applying a role with fragments to an empty
//! root, the merge rules, conflicts with the role's own files and units, and refusals.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Scratch, decode_data_url_bytes, judge};
use serde_json::Value;

fn fixtures() -> PathBuf {
    common::repo().join("tests/fixtures/butane")
}

/// The config with every data URL replaced by the bytes it holds, and the version dropped
/// (kato-image renders 3.3.0 for Butane 1.1.0 too): what must agree with the spec.
fn normalised(mut config: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(url)) = map.get("source") {
                    let bytes = decode_data_url_bytes(&url.replace("data:text/plain,", "data:,"));
                    map.insert(
                        "source".into(),
                        Value::String(String::from_utf8_lossy(&bytes).into()),
                    );
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    config.as_object_mut().unwrap().remove("ignition");
    walk(&mut config);
    config
}

fn translated(path: &Path) -> Value {
    let config = kato_image::profile::fragment::translate_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&kato_image::config::ignition::to_bytes(&config).unwrap()).unwrap()
}

fn validate(bytes: &[u8], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.ign");
    std::fs::write(&path, bytes).unwrap();
    let out = judge("ignition-validate", &[], Some(&path));
    assert!(
        out.status.success(),
        "ignition-validate refused {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_butane_feature_translates_as_the_spec_says() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let stem = if let Some(stem) = name.strip_suffix(".bu") {
            stem
        } else if let Some(stem) = name.strip_suffix(".in.ign") {
            stem
        } else {
            continue;
        };
        seen += 1;
        let expected: Value =
            serde_json::from_slice(&std::fs::read(fixtures().join(format!("{stem}.ign"))).unwrap())
                .unwrap();
        let ours = translated(&path);
        assert_eq!(ours["ignition"]["version"], "3.3.0", "{name}");
        assert_eq!(
            normalised(ours.clone()),
            normalised(expected),
            "{name}: translation differs from the spec's"
        );
        validate(&serde_json::to_vec(&ours).unwrap(), &name);
    }
    assert!(seen >= 9, "only {seen} fixtures");
}

/// A scratch profile folder whose master adds `fragments` (written next to the profiles).
fn master_with(fragments: &[(&str, &str)]) -> Scratch {
    let scratch = Scratch::new();
    let mut list = String::from("ignition:\n");
    for (name, text) in fragments {
        scratch.write(&format!("profiles/{name}"), text);
        let key = if name.ends_with(".bu") {
            "butane"
        } else {
            "ignition"
        };
        list.push_str(&format!("  - {key}: {name}\n"));
    }
    let master = std::fs::read_to_string(scratch.path("profiles/master.yaml")).unwrap();
    scratch.write("profiles/master.yaml", &format!("{master}{list}"));
    scratch
}

fn render(scratch: &Scratch, role: &str) -> std::process::Output {
    scratch
        .kato(&[
            "render",
            "--role",
            role,
            "--profiles",
            "profiles",
            "--units",
            "units",
        ])
        .output()
        .unwrap()
}

fn rendered(scratch: &Scratch) -> Value {
    let out = render(scratch, "master");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    validate(&out.stdout, "master with fragments");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The one line `render` prints for a profile it refuses.
fn refused(scratch: &Scratch) -> String {
    let out = render(scratch, "master");
    assert!(!out.status.success(), "accepted");
    assert!(out.stdout.is_empty());
    let text = String::from_utf8(out.stderr).unwrap();
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    text
}

const EXTRA: &str = "variant: flatcar
version: 1.1.0
storage:
  files:
    - path: /etc/extra/greeting
      mode: 0640
      contents:
        inline: hello from butane
  directories:
    - path: /var/lib/extra
      mode: 0700
  links:
    - path: /etc/extra/greeting.link
      target: /etc/extra/greeting
systemd:
  units:
    - name: extra.service
      enabled: true
      contents: |
        [Service]
        ExecStart=/bin/true
        [Install]
        WantedBy=multi-user.target
      dropins:
        - name: 10-a.conf
          contents: \"[Service]\\nEnvironment=A=1\\n\"
passwd:
  users:
    - name: core
      ssh_authorized_keys_local: [core.pub]
    - name: ops
      uid: 1500
      groups: [docker]
  groups:
    - name: metrics
      gid: 1600
kernel_arguments:
  should_exist: [kato.extra=1]
";

#[test]
fn a_role_with_fragments_renders_validates_and_the_real_ignition_applies_it() {
    let key = std::fs::read_to_string(fixtures().join("local/keys/ops.pub")).unwrap();
    let scratch = master_with(&[("extra.bu", EXTRA)]);
    scratch.write("profiles/core.pub", &key);
    let config = rendered(&scratch);
    let files = config["storage"]["files"].as_array().unwrap();
    // The role's own files are still there, the fragment's beside them.
    assert!(files.iter().any(|f| f["path"] == "/etc/kato/role.env"));
    let greeting = files
        .iter()
        .find(|f| f["path"] == "/etc/extra/greeting")
        .unwrap();
    assert_eq!(greeting["mode"], 0o640);
    let units: Vec<&str> = config["systemd"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(units.contains(&"extra.service") && units.contains(&"mesos-master.service"));
    // The profile's `core` and the fragment's are one user with both keys.
    let users = config["passwd"]["users"].as_array().unwrap();
    let core: Vec<_> = users.iter().filter(|u| u["name"] == "core").collect();
    assert_eq!(core.len(), 1);
    assert_eq!(core[0]["sshAuthorizedKeys"].as_array().unwrap().len(), 3);
    // No `groups` for core: Ignition's usermod --groups would replace Flatcar's.
    assert!(core[0]["groups"].is_null(), "{}", core[0]);

    let root = common::ignition::files_stage(&serde_json::to_vec(&config).unwrap());
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(at("/etc/extra/greeting")).unwrap(),
        "hello from butane"
    );
    assert_eq!(common::ignition::mode(&at("/etc/extra/greeting")), 0o640);
    assert_eq!(common::ignition::mode(&at("/var/lib/extra")), 0o700);
    assert_eq!(
        std::fs::read_link(at("/etc/extra/greeting.link")).unwrap(),
        Path::new("/etc/extra/greeting")
    );
    assert!(at("/etc/systemd/system/extra.service").is_file());
    assert_eq!(
        std::fs::read_to_string(at("/etc/systemd/system/extra.service.d/10-a.conf")).unwrap(),
        "[Service]\nEnvironment=A=1\n"
    );
    let preset =
        std::fs::read_to_string(at("/etc/systemd/system-preset/20-ignition.preset")).unwrap();
    assert!(preset.contains("enable extra.service"), "{preset}");
    let passwd = std::fs::read_to_string(at("/etc/passwd")).unwrap();
    assert!(passwd.contains("ops:x:1500:"), "{passwd}");
    let group = std::fs::read_to_string(at("/etc/group")).unwrap();
    assert!(group.contains("metrics:x:1600:"), "{group}");
    let keys = std::fs::read_to_string(at("/home/core/.ssh/authorized_keys.d/ignition")).unwrap();
    for line in key.lines().filter(|l| !l.is_empty()) {
        assert!(keys.contains(line), "{keys}");
    }
    // should_exist joins the profile's kernel arguments, which `build` bakes into the image's
    // command line (tests/build.rs checks that path).
    let profile = kato_image::profile::load_role(&scratch.path("profiles"), "master").unwrap();
    let args: Vec<&str> = profile
        .kernel_args
        .iter()
        .map(|a| a.value.as_str())
        .collect();
    assert!(args.contains(&"kato.extra=1"), "{args:?}");
    assert!(
        profile.sources.iter().any(|s| s.path.ends_with("core.pub")),
        "local files are inputs of the build"
    );
    let out = scratch
        .kato(&["validate", "--profiles", "profiles", "--units", "units"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let master = text.lines().find(|l| l.starts_with("master:")).unwrap();
    assert!(
        master.contains("from Butane/Ignition fragments") && master.contains("extra.service"),
        "{master}"
    );
}

#[test]
fn later_fragments_replace_paths_and_add_to_units_and_users() {
    let first = "variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/x
      contents: {inline: first}
systemd:
  units:
    - name: docker.service
      dropins: [{name: a.conf, contents: \"[Service]\\n\"}]
passwd:
  users:
    - name: ops
      shell: /bin/sh
      groups: [docker]
";
    let second = r#"{"ignition": {"version": "3.3.0"},
 "storage": {"files": [{"path": "/etc/x", "mode": 384, "contents": {"source": "data:,second"}}]},
 "systemd": {"units": [{"name": "docker.service", "dropins": [{"name": "b.conf", "contents": "[Unit]\n"}]}]},
 "passwd": {"users": [{"name": "ops", "shell": "/bin/bash", "groups": ["wheel"]}]}}
"#;
    let config = rendered(&master_with(&[("a.bu", first), ("b.ign", second)]));
    let x: Vec<_> = config["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"] == "/etc/x")
        .collect();
    assert_eq!(x.len(), 1);
    assert_eq!(x[0]["contents"]["source"], "data:,second");
    assert_eq!(x[0]["mode"], 384);
    let docker = config["systemd"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "docker.service")
        .unwrap()
        .clone();
    let dropins: Vec<_> = docker["dropins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(dropins, ["a.conf", "b.conf"]);
    let ops = config["passwd"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "ops")
        .unwrap()
        .clone();
    assert_eq!(ops["shell"], "/bin/bash");
    assert_eq!(ops["groups"], serde_json::json!(["docker", "wheel"]));
}

#[test]
fn a_fragment_writing_what_the_role_writes_is_refused_naming_both_places() {
    let own_file = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/sysctl.d/10-kato.conf\n";
    let text = refused(&master_with(&[("a.bu", own_file)]));
    assert!(
        text.contains("a.bu:5:7") && text.contains("base.yaml:"),
        "{text}"
    );
    let generated = "variant: flatcar\nversion: 1.0.0\nstorage:\n  links:\n    - path: /etc/kato\n      target: /tmp\n";
    let text = refused(&master_with(&[("a.bu", generated)]));
    assert!(
        text.contains("a.bu:5:7") && text.contains("/etc/kato/role.env"),
        "{text}"
    );
    let unit = "variant: flatcar\nversion: 1.0.0\nsystemd:\n  units:\n    - name: mesos-master.service\n      enabled: false\n";
    let text = refused(&master_with(&[("a.bu", unit)]));
    assert!(
        text.contains("a.bu:5:7") && text.contains("units/mesos-master.service"),
        "{text}"
    );
    let arg =
        "variant: flatcar\nversion: 1.0.0\nkernel_arguments:\n  should_not_exist: [kato.x=1]\n";
    let scratch = master_with(&[("a.bu", arg)]);
    let master = std::fs::read_to_string(scratch.path("profiles/master.yaml")).unwrap();
    scratch.write(
        "profiles/master.yaml",
        &format!("{master}kernel_args: [kato.x=1]\n"),
    );
    let text = refused(&scratch);
    assert!(
        text.contains("a.bu:4:22") && text.contains("master.yaml:"),
        "{text}"
    );
}

#[test]
fn what_is_not_translated_is_refused_by_name_where_it_is_written() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "a.bu",
            "variant: flatcar\nversion: 1.0.0\nstorage:\n  disks:\n    - device: /dev/sda\n",
            &["a.bu:5:5", "storage.disks", "repartition"],
        ),
        (
            "a.bu",
            "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/x\n      contents:\n        source: https://example.com/x\n",
            &["a.bu:7:17", "https", "inline or from a local file"],
        ),
        (
            "a.bu",
            "variant: fcos\nversion: 1.5.0\n",
            &["a.bu:1:10", "\"fcos\"", "variant: flatcar"],
        ),
        (
            "a.bu",
            "variant: flatcar\nversion: 1.2.0\n",
            &["a.bu:2:10", "1.0.0 or 1.1.0"],
        ),
        (
            "a.bu",
            "variant: flatcar\nversion: 1.0.0\nsystemd:\n  units:\n    - name: a.service\n      contents_local: a.service\n",
            &["a.bu:6:23", "contents_local needs Butane `version: 1.1.0`"],
        ),
        (
            "a.bu",
            "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/x\n      mode: 04755\n",
            &["a.bu:6:13", "setuid", "3.4.0"],
        ),
        (
            "a.bu",
            "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/x\n      contents:\n        local: ../master.yaml\n",
            &["a.bu:7:16", "without `..`"],
        ),
        (
            "a.bu",
            "variant: flatcar\nversion: 1.0.0\nignition:\n  config:\n    merge: [{source: http://x}]\n",
            &["a.bu:5:5", "ignition.config"],
        ),
        (
            "a.bu",
            "variant: flatcar\nversion: 1.0.0\nstorage:\n  filez: []\n",
            &["a.bu:4:3", "filez"],
        ),
        (
            "a.ign",
            "{\"ignition\": {\"version\": \"3.0.0\"}, \"kernelArguments\": {\"shouldExist\": [\"a=1\"]}}",
            &["a.ign:1:55", "3.3.0 or later"],
        ),
        (
            "a.ign",
            // A well-formed hash of other bytes (a malformed one is told as malformed).
            &*Box::leak(format!("{{\"ignition\": {{\"version\": \"3.3.0\"}},\n \"storage\": {{\"files\": [{{\"path\": \"/x\", \"contents\": {{\"source\": \"data:,a\", \"verification\": {{\"hash\": \"sha512-{}\"}}}}}}]}}}}", "0".repeat(128)).into_boxed_str()),
            &["a.ign:2:62", "verification", "not the 000"],
        ),
        (
            "a.ign",
            "{\"ignition\": {\"version\": \"3.5.0\"}}",
            &["a.ign:1:26", "3.0.0 to 3.4.0"],
        ),
    ];
    for (name, text, wanted) in cases {
        let message = refused(&master_with(&[(name, text)]));
        for want in *wanted {
            assert!(
                message.contains(want),
                "{text}\nwanted {want:?} in: {message}"
            );
        }
        assert!(
            !message.contains("IgnoredAny") && !message.contains("Spanned"),
            "{message}"
        );
    }
}

#[test]
fn cloud_config_says_it_cannot_carry_fragments() {
    let scratch = master_with(&[(
        "a.bu",
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  directories:\n    - path: /opt/x\n",
    )]);
    let out = scratch
        .kato(&[
            "render",
            "--role",
            "master",
            "--format",
            "cloud-config",
            "--profiles",
            "profiles",
            "--units",
            "units",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(
        text.contains("a.bu:5:7") && text.contains("Ignition"),
        "{text}"
    );
}

/// Configs the real Ignition refuses whole (so every machine of the role would stop at first
/// boot) are refused where they are written: `ignition-validate`, the judge, refuses each
/// fragment as a config of its own, and kato-image refuses the role naming the fragment's
/// line, in Ignition's words.
#[test]
fn what_ignition_refuses_is_refused_at_the_fragment() {
    let file = |path: &str| format!(r#"{{"path": "{path}", "contents": {{"source": "data:,x"}}}}"#);
    let cases = [
        (format!(r#""files": [{}]"#, file("/etc/kato/./role.env")), "path is not fully simplified"),
        (format!(r#""files": [{}]"#, file("/etc//kato/role.env")), "path is not fully simplified"),
        (
            format!(
                r#""links": [{{"path": "/opt/evil", "target": "/etc/kato"}}], "files": [{}]"#,
                file("/opt/evil/role.env")
            ),
            "file path includes link in config",
        ),
        (
            r#""files": [{"path": "/etc/x", "user": {"id": 0, "name": "root"}}]"#.to_string(),
            "cannot set both id and name",
        ),
        (
            r#""links": [{"path": "/etc/y"}]"#.to_string(),
            "has no `target`",
        ),
        (
            r#""files": [{"path": "/etc/z", "contents": {"source": "data:,x", "verification": {"hash": "sha512-zz"}}}]"#.to_string(),
            "is not `sha512-` and 128 hex digits",
        ),
        (
            r#""files": [{"path": "/etc/z", "contents": {"source": "data:,x", "verification": {"hash": "sha256-"}}}]"#.to_string(),
            "or `sha256-` and 64",
        ),
    ];
    for (storage, expected) in &cases {
        let text =
            format!("{{\"ignition\": {{\"version\": \"3.3.0\"}},\n \"storage\": {{{storage}}}}}\n");
        // The judge: Ignition's own validator refuses the fragment as a config.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ign");
        std::fs::write(&path, &text).unwrap();
        let judged = judge("ignition-validate", &[], Some(&path));
        assert!(
            !judged.status.success(),
            "ignition-validate accepted {text}"
        );
        let scratch = master_with(&[("bad.ign", &text)]);
        let out = render(&scratch, "master");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(stderr.contains("profiles/bad.ign:"), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    // A Butane link entry without a target takes it from the tree's link (Butane's way of
    // giving a tree's link an owner).
    let scratch = master_with(&[(
        "own.bu",
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  trees:\n    - {local: t, path: /opt/t}\n  links:\n    - path: /opt/t/l\n      user: {name: core}\n",
    )]);
    std::fs::create_dir(scratch.path("profiles/t")).unwrap();
    std::os::unix::fs::symlink("x", scratch.path("profiles/t/l")).unwrap();
    let out = render(&scratch, "master");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = config["storage"]["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"] == "/opt/t/l")
        .unwrap()
        .clone();
    assert_eq!(link["target"], "x");
    assert_eq!(link["user"]["name"], "core");
    validate(&out.stdout, "a tree's link with an owner");
}

/// Spec 2 is named as such; Butane's own keys are not offered as Ignition's; SSH key files
/// may have comment lines, as sshd reads them; NUL bytes in unit text are refused.
#[test]
fn fragment_messages_speak_of_what_was_written() {
    let scratch = master_with(&[(
        "old.ign",
        r#"{"ignition": {"version": "2.2.0"}, "storage": {"filesystem": []}}"#,
    )]);
    let stderr = String::from_utf8(render(&scratch, "master").stderr).unwrap();
    assert!(stderr.contains("\"2.2.0\" is not spec 3.x"), "{stderr}");
    let scratch = master_with(&[(
        "typo.ign",
        r#"{"ignition": {"version": "3.3.0"}, "systemd": {"units": [{"name": "a.service", "contens": ""}]}}"#,
    )]);
    let stderr = String::from_utf8(render(&scratch, "master").stderr).unwrap();
    assert!(
        stderr.contains("contens") && !stderr.contains("contentsLocal"),
        "{stderr}"
    );
    let key = std::fs::read_to_string(fixtures().join("local/keys/ops.pub")).unwrap();
    let scratch = master_with(&[(
        "keys.bu",
        "variant: flatcar\nversion: 1.1.0\npasswd:\n  users:\n    - name: ops\n      ssh_authorized_keys_local: [ops.keys]\n",
    )]);
    scratch.write(
        "profiles/ops.keys",
        &format!("# operators\n\n{key}\n# end\n"),
    );
    let out = render(&scratch, "master");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ops = config["passwd"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "ops")
        .unwrap()
        .clone();
    assert_eq!(
        ops["sshAuthorizedKeys"].as_array().unwrap().len(),
        key.lines().filter(|l| !l.trim().is_empty()).count()
    );
    let scratch = master_with(&[(
        "nul.bu",
        "variant: flatcar\nversion: 1.0.0\nsystemd:\n  units:\n    - name: a.service\n      contents: \"[Service]\\nExecStart=/bin/true\\u0000; rm -rf /\\n\"\n",
    )]);
    let stderr = String::from_utf8(render(&scratch, "master").stderr).unwrap();
    assert!(stderr.contains("NUL byte"), "{stderr}");
}
