//! Bad input: each case gets one line on stderr naming the file and position (or field), a
//! non-zero exit, and nothing on stdout.

use crate::common;

use common::Scratch;

/// Renders `role` in `scratch` and returns the single error line.
fn error_of(scratch: &Scratch, role: &str) -> String {
    let out = scratch.kato(&["render", "--role", role]).output().unwrap();
    assert!(!out.status.success(), "render {role} should fail");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing is printed on failure");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr.trim_end().to_string()
}

fn role_error(yaml: &str) -> String {
    let scratch = Scratch::new();
    scratch.write("profiles/probe.yaml", yaml);
    error_of(&scratch, "probe")
}

fn assert_has(error: &str, parts: &[&str]) {
    for part in parts {
        assert!(error.contains(part), "`{part}` not in: {error}");
    }
}

#[test]
fn unknown_role_lists_the_known_ones() {
    let error = error_of(&Scratch::new(), "database");
    assert_has(&error, &["unknown role `database`", "edge, master, worker"]);
}

#[test]
fn abstract_profile_is_not_a_role() {
    let error = error_of(&Scratch::new(), "base");
    assert_has(
        &error,
        &["unknown role `base`", "known roles: edge, master, worker"],
    );
}

#[test]
fn unknown_field_names_file_line_and_column() {
    let error = role_error("extends: base\nkernel_argz: [quiet]\n");
    assert_has(
        &error,
        &[
            "profiles/probe.yaml:2:1:",
            "unknown field `kernel_argz`",
            "kernel_args",
        ],
    );
}

#[test]
fn wrong_type_names_its_position() {
    let error = role_error("extends: base\nusers:\n  - name: ops\n    groups: wheel\n");
    assert_has(&error, &["profiles/probe.yaml:4:"]);
}

#[test]
fn unknown_enum_value_lists_the_choices() {
    let error = role_error("extends: base\nrelease:\n  channel: nightly\n");
    assert_has(
        &error,
        &[
            "profiles/probe.yaml:3:12:",
            "nightly",
            "stable, beta, alpha, lts",
        ],
    );
}

#[test]
fn broken_yaml_names_its_position() {
    let error = role_error("extends: base\nfiles: [\n");
    assert_has(&error, &["profiles/probe.yaml:"]);
}

#[test]
fn unit_missing_from_units_folder() {
    let error = role_error("extends: base\nunits:\n  - name: etcd-member.service\n");
    assert_has(
        &error,
        &[
            "profiles/probe.yaml:3:5:",
            "`etcd-member.service` is not in",
            "units",
        ],
    );
}

#[test]
fn unit_file_with_bad_syntax_names_its_line() {
    let scratch = Scratch::new();
    scratch.write(
        "units/broken.service",
        "[Unit]\nDescription=x\n[Service]\nExecStart /bin/true\n",
    );
    let error = error_of(&scratch, "worker");
    assert_has(&error, &["units/broken.service:4", "expected `Key=Value`"]);
}

#[test]
fn service_without_exec_start() {
    let scratch = Scratch::new();
    scratch.write(
        "units/empty.service",
        "[Unit]\nDescription=x\n[Service]\nType=simple\n",
    );
    let error = error_of(&scratch, "worker");
    assert_has(&error, &["units/empty.service:3", "no ExecStart="]);
}

#[test]
fn inline_unit_with_bad_syntax() {
    let error = role_error(
        "extends: base\nunits:\n  - name: hello.service\n    contents: \"ExecStart=/bin/true\"\n",
    );
    assert_has(
        &error,
        &[
            "profiles/probe.yaml:",
            "hello.service",
            "before any [Section]",
        ],
    );
}

#[test]
fn extends_cycle_is_named() {
    let scratch = Scratch::new();
    scratch.write("profiles/a.yaml", "extends: b\n");
    scratch.write("profiles/b.yaml", "extends: a\n");
    let error = error_of(&scratch, "a");
    assert_has(
        &error,
        &["profiles/b.yaml:1:10:", "`extends` cycle: a -> b -> a"],
    );
}

#[test]
fn extends_an_unknown_profile() {
    let error = role_error("extends: bsae\n");
    assert_has(
        &error,
        &[
            "profiles/probe.yaml:1:10:",
            "`extends: bsae` names no profile",
            "base",
        ],
    );
}

#[test]
fn duplicate_file_path_names_both_places() {
    let error = role_error(
        "extends: base\nfiles:\n  - path: /etc/sysctl.d/10-kato.conf\n    contents: \"x\"\n",
    );
    assert_has(
        &error,
        &[
            "profiles/probe.yaml:3:11:",
            "duplicate path",
            "profiles/base.yaml:",
        ],
    );
}

#[test]
fn generated_file_path_is_reserved() {
    let error =
        role_error("extends: base\nfiles:\n  - path: /etc/kato/role.env\n    contents: \"x\"\n");
    assert_has(
        &error,
        &["profiles/probe.yaml:3:11:", "written by kato-image"],
    );
}

#[test]
fn relative_file_path() {
    let error = role_error("extends: base\nfiles:\n  - path: etc/motd\n");
    assert_has(
        &error,
        &["profiles/probe.yaml:3:11:", "not an absolute path"],
    );
}

#[test]
fn unit_name_with_a_slash() {
    let error = role_error("extends: base\nunits:\n  - units/cadvisor.service\n");
    assert_has(&error, &["profiles/probe.yaml:3:5:", "no `/` or `..`"]);
}

#[test]
fn unit_name_with_dot_dot() {
    let error = role_error("extends: base\nunits:\n  - ..service\n");
    assert_has(&error, &["profiles/probe.yaml:3:5:", "no `/` or `..`"]);
}

#[test]
fn private_key_instead_of_public_key() {
    let error = role_error(
        "extends: base\nusers:\n  - name: ops\n    ssh_authorized_keys:\n      - \"-----BEGIN OPENSSH PRIVATE KEY-----\"\n",
    );
    assert_has(&error, &["profiles/probe.yaml:5:9:", "private key"]);
}

#[test]
fn mangled_public_key() {
    let error = role_error(
        "extends: base\nusers:\n  - name: ops\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ== ops\n",
    );
    assert_has(&error, &["profiles/probe.yaml:5:9:", "says `ssh-rsa`"]);
}

#[test]
fn unit_of_another_role() {
    let error = role_error("extends: base\nunits:\n  - mesos-node.service\n");
    assert_has(
        &error,
        &["profiles/probe.yaml:3:5:", "for role worker", "not probe"],
    );
}

#[test]
fn template_without_instances() {
    let scratch = Scratch::new();
    scratch.write("profiles/master.yaml", "extends: base\n");
    let error = error_of(&scratch, "master");
    assert_has(
        &error,
        &[
            "units/zookeeper@.service",
            "template `zookeeper@.service`",
            "instance_from",
        ],
    );
}

#[test]
fn fleet_conflicts_are_enforced() {
    let scratch = Scratch::new();
    scratch.write(
        "profiles/master.yaml",
        "extends: base\nunits:\n  - name: zookeeper@.service\n    instances: [\"1\", \"2\"]\n",
    );
    let error = error_of(&scratch, "master");
    assert_has(
        &error,
        &[
            "profiles/master.yaml:3:5:",
            "Conflicts=zookeeper@*.service",
            "zookeeper@2.service",
        ],
    );
}

#[test]
fn kernel_argument_that_would_break_grub_cfg() {
    let error = role_error("extends: base\nkernel_args:\n  - 'console=\"ttyS0'\n");
    assert_has(
        &error,
        &["profiles/probe.yaml:3:5:", "kernel_args", "grub.cfg"],
    );
}

#[test]
fn metadata_value_that_role_env_cannot_carry() {
    let error = role_error("extends: base\nmetadata:\n  secret: \"$(reboot)\"\n");
    assert_has(&error, &["profiles/probe.yaml:3:11:", "metadata: `secret`"]);
}

#[test]
fn unreadable_profiles_folder() {
    let scratch = Scratch::new();
    let out = scratch
        .kato(&["render", "--role", "master", "--profiles", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("nowhere: cannot read profile folder"),
        "{stderr}"
    );
}

#[test]
fn image_entries_that_cannot_be_images() {
    let cases = [
        (
            "extends: base\nimages:\n  - Zookeeper:3.9\n",
            "profiles/probe.yaml:3:5: images: `Zookeeper:3.9` is not an image reference",
        ),
        (
            "extends: base\nimages:\n  - zookeeper@sha256:abc\n",
            "is not `sha256:` and 64 lower-case hex digits",
        ),
        (
            "extends: base\nimages:\n  - reference: zookeeper:3.9\n    archive: z.tar\n",
            "profiles/probe.yaml:3:5: images: an image has a `reference` or an `archive`, not both",
        ),
        (
            "extends: base\nimages:\n  - archive: z.tar\n    sha256: xyz\n",
            "profiles/probe.yaml:3:5: images:",
        ),
        (
            "extends: base\ndata:\n  size: lots\n",
            "profiles/probe.yaml:3:9: data: size `lots` is not a size",
        ),
    ];
    for (yaml, expected) in cases {
        assert_has(&role_error(yaml), &[expected]);
    }
}

/// Spec 3.3.0 cannot say setuid, setgid or sticky: a mode with them is refused where it is
/// written, naming the spec that can and the releases that accept it, instead of being
/// rendered into a config Ignition would apply without the bit.
#[test]
fn a_mode_only_a_newer_spec_expresses_names_the_releases_that_accept_it() {
    for mode in ["4755", "2755", "1777", "0o6711"] {
        let error = role_error(&format!(
            "extends: base\nfiles:\n  - path: /opt/bin/tool\n    mode: \"{mode}\"\n    contents: x\n"
        ));
        assert_has(
            &error,
            &[
                "profiles/probe.yaml:4:",
                "/opt/bin/tool",
                "setuid, setgid or sticky",
                "spec 3.4.0",
                "LTS 4081",
                "spec 3.3.0",
            ],
        );
    }
    // The ordinary bits still render, at spec 3.3.0.
    let scratch = Scratch::new();
    scratch.write(
        "profiles/probe.yaml",
        "extends: base\nfiles:\n  - path: /opt/bin/tool\n    mode: \"0755\"\n    contents: x\n",
    );
    let config = scratch.rendered("probe");
    assert_eq!(config["ignition"]["version"], "3.3.0");
}

const STANDALONE_CORE_DOCKER: &str = "release:\n  channel: stable\n  version: current\n  board: amd64-usr\nusers:\n  - name: core\n    groups: [docker]\noutputs:\n  raw: {}\n";

#[test]
fn groups_for_core_are_refused_naming_the_flatcar_groups_they_would_remove() {
    // Ignition runs `usermod --groups` without `--append`: a list replaces Flatcar's groups.
    // Standalone, since base already names core (a second entry for one user is refused).
    let error = role_error(STANDALONE_CORE_DOCKER);
    assert_has(
        &error,
        &[
            "profiles/probe.yaml:6:",
            "core would lose wheel, systemd-journal",
            "leave `groups` out",
        ],
    );
    // The same list from a Butane fragment is told at the fragment's line.
    let scratch = Scratch::new();
    scratch.write(
        "profiles/core.bu",
        "variant: flatcar\nversion: 1.0.0\npasswd:\n  users:\n    - name: core\n      groups: [wheel, docker]\n",
    );
    scratch.write(
        "profiles/probe.yaml",
        "extends: base\nignition:\n  - butane: core.bu\n",
    );
    let error = error_of(&scratch, "probe");
    assert_has(&error, &["core.bu:5:", "core would lose systemd-journal"]);
    // Keeping all of them (and adding one) is allowed.
    let scratch = Scratch::new();
    scratch.write(
        "profiles/probe.yaml",
        &STANDALONE_CORE_DOCKER.replace("[docker]", "[wheel, docker, systemd-journal, adm]"),
    );
    scratch.rendered("probe");
}

#[test]
fn a_profile_too_large_to_be_one_says_what_was_too_large_and_where() {
    let many = vec!["a"; 300_000].join(",");
    let error = role_error(&format!("extends: base\nkernel_args: [{many}]\n"));
    assert_has(
        &error,
        &[
            "profiles/probe.yaml:2:",
            "too large: more than 250000 values (maps, lists and texts) in one file",
        ],
    );
    assert!(
        !error.contains("budget") && !error.contains("Nodes"),
        "{error}"
    );
}

#[test]
fn an_unknown_output_is_one_line_with_the_usage_status() {
    let scratch = Scratch::new();
    let out = scratch
        .kato(&["build", "--role", "master", "--output", "qemu,potato"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_has(
        &stderr,
        &[
            "invalid value 'potato' for '--output <OUTPUT>'",
            "expected raw, ipxe, ami or a platform",
        ],
    );
}
