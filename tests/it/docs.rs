//! The documentation as a user reads it: every `kato-image` example in a `sh` block of the
//! README and `docs/` runs as written, page by page, against the signed mini release on
//! loopback; every link between pages resolves inside the repository.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::boot::mini_release;
use common::http::Server;
use common::{Scratch, repo};

/// The README and every page under docs/, in a stable order.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages.insert(0, repo().join("README.md"));
    pages
}

/// A fenced block: its info string, first line number and lines.
struct Block {
    info: String,
    line: usize,
    lines: Vec<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    line: n + 1,
                    lines: Vec::new(),
                })
            }
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some(block), None) => block.lines.push(line.to_string()),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    blocks
}

/// The `kato-image` commands of a block, with `\` continuations joined.
fn commands(block: &Block) -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in &block.lines {
        let line = line.trim();
        if !pending.is_empty() {
            pending.push(' ');
            pending.push_str(line.trim_end_matches('\\'));
        } else if line.starts_with("kato-image ") {
            pending = line.trim_end_matches('\\').to_string();
        }
        if !pending.is_empty() && !line.ends_with('\\') {
            commands.push(std::mem::take(&mut pending));
        }
    }
    commands
}

/// Runs one page's examples in order in a fresh copy of the repository with its own cache;
/// returns what failed, each with the page, line and output.
fn run_page(page: &Path, template: &str, bin: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap();
    let name = page.strip_prefix(repo()).unwrap().display().to_string();
    let runnable: Vec<(usize, String)> = blocks(&text)
        .iter()
        .filter(|b| b.info == "sh")
        .flat_map(|b| commands(b).into_iter().map(move |c| (b.line, c)))
        .collect();
    if runnable.is_empty() {
        return Vec::new();
    }
    let scratch = Scratch::new();
    let cache = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (line, command) in runnable {
        let out = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(scratch.dir.path())
            .env("PATH", path_with(bin))
            .env("HOME", scratch.dir.path())
            .env_remove("XDG_CACHE_HOME")
            .env("KATO_IMAGE_RELEASE_URL", template)
            .env("KATO_IMAGE_KEYRING", mini_release().join("keyring.asc"))
            .env("KATO_IMAGE_CACHE", cache.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{name} (block at line {line}): `{command}` exited with {}:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    failures
}

/// PATH with a folder holding only `kato-image` (the binary under test) first.
fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

#[test]
fn every_example_in_the_docs_runs_as_written() {
    let server = Server::start(mini_release());
    let template = format!("{}{{channel}}/{{board}}/{{version}}/", server.url());
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        assert_cmd::cargo::cargo_bin("kato-image"),
        bin.path().join("kato-image"),
    )
    .unwrap();
    let mut ran = 0;
    let mut failures = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        ran += blocks(&text)
            .iter()
            .filter(|b| b.info == "sh")
            .map(|b| commands(b).len())
            .sum::<usize>();
        failures.extend(run_page(&page, &template, bin.path()));
    }
    assert!(
        ran >= 20,
        "only {ran} examples found: is the block syntax still ```sh?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The examples fetched from the loopback mirror, so they did not reach the internet.
    assert!(!server.requests().is_empty());
}

/// A block with a `kato-image` command is either run (`sh`) or marked as not runnable here
/// (`sh no-run`): no example escapes the test by being tagged `bash` or left bare.
#[test]
fn every_example_is_tagged_sh_or_sh_no_run() {
    let mut wrong = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for block in blocks(&text) {
            if !commands(&block).is_empty() && block.info != "sh" && block.info != "sh no-run" {
                wrong.push(format!(
                    "{} line {}: ```{}",
                    page.display(),
                    block.line,
                    block.info
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_block = false;
    let mut set = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            set.insert(anchor(line.trim_start_matches('#')));
        }
    }
    set
}

/// `[text](target)` targets outside fenced blocks and inline code.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_block = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        // Code spans may hold `](` that is no link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push((n + 1, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn every_link_in_the_docs_resolves_inside_the_repository() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (line, target) in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            let inside = resolved
                .canonicalize()
                .is_ok_and(|p| p.starts_with(repo().canonicalize().unwrap()));
            let anchored = match fragment {
                Some(fragment) if resolved.extension().is_some_and(|e| e == "md") => {
                    std::fs::read_to_string(&resolved).is_ok_and(|t| anchors(&t).contains(fragment))
                }
                _ => true,
            };
            if !inside || !anchored {
                broken.push(format!("{}:{line}: ({target})", page.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that do not resolve:\n{}",
        broken.join("\n")
    );
}
