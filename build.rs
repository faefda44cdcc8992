//! Build script: stamps the git commit into `--version`: `$SWITCHYARD_COMMIT`
//! when set (the Dockerfile's build argument, as its context has no `.git`),
//! else `git rev-parse --short HEAD`, else `unknown` (a source tarball).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let commit = std::env::var("SWITCHYARD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty() && c != "unknown")
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SWITCHYARD_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SWITCHYARD_COMMIT");
    // A new commit moves HEAD's reflog; rebuilding then keeps the stamp honest.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/logs/HEAD");
    }
}
