//! Records the git revision the binary is built from (`lakesink --version`): `LAKESINK_GIT_REV`
//! if set (image builds without `.git`), else `git rev-parse`, else "unknown".
fn main() {
    println!("cargo:rerun-if-env-changed=LAKESINK_GIT_REV");
    let rev = std::env::var("LAKESINK_GIT_REV").ok().or_else(|| {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    for path in git_paths() {
        println!("cargo:rerun-if-changed={path}");
    }
    println!(
        "cargo:rustc-env=LAKESINK_GIT_REV={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}

/// The files whose change means another revision: `.git/HEAD`, the ref it points at, and
/// `packed-refs`.
fn git_paths() -> Vec<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let mut paths = Vec::new();
    for name in ["HEAD", "packed-refs"] {
        paths.extend(git(&["rev-parse", "--git-path", name]));
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.extend(git(&["rev-parse", "--git-path", &r]));
    }
    paths
}
