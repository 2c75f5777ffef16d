//! The GPU flavour's packaging (`packaging/build --cuda`): cofferd-cuda's .deb and .rpm
//! take cofferd's place (provides, conflicts, replaces), carry the same files plus cuBLAS
//! in the private `/usr/lib/coffer/cuda`, pass lintian, and do not make rpm look for
//! cuBLAS elsewhere. The binaries are this test build's CPU ones and the libraries
//! stand-ins with cuBLAS's sonames: what is tested is the packaging; the CUDA build
//! itself is `packaging/build --cuda`, and running it is `hw-tests/gpu-chat`.

mod common;

use std::process::Command;

use coffer_packaging::{build_deb, build_rpm, run};

use common::{BUILD, assert_lintian_clean, have, out_dir, requires, sh, staging};

const LIBS: [&str; 2] = ["libcublas.so.13", "libcublasLt.so.13"];

/// Shared objects with cuBLAS's sonames where the CUDA build stages the real ones.
fn stand_in_libraries(dir: &std::path::Path) {
    let cuda = dir.join("release/cuda");
    std::fs::create_dir_all(&cuda).unwrap();
    let source = cuda.join("stand-in.c");
    std::fs::write(&source, "int cublasCreate_v2(void) { return 0; }\n").unwrap();
    for lib in LIBS {
        run(Command::new("gcc")
            .args(["-shared", "-fPIC", "-s"])
            .arg(format!("-Wl,-soname,{lib},-z,relro,-z,now"))
            .arg("-o")
            .arg(cuda.join(lib))
            .arg(&source))
        .unwrap();
    }
    std::fs::remove_file(source).unwrap();
}

#[test]
fn cofferd_cuda_takes_cofferds_place_and_ships_cublas_privately() {
    if !requires(&[
        ("dpkg-deb", have("dpkg-deb")),
        ("lintian", have("lintian")),
        ("cargo-deb", have("cargo-deb")),
        ("rpm", have("rpm")),
        ("cargo-generate-rpm", have("cargo-generate-rpm")),
        ("gcc", have("gcc")),
    ]) {
        return;
    }
    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let staging = staging();
    stand_in_libraries(staging);
    let out = out_dir("cuda");

    let cpu = build_deb("cofferd", None, staging, 1, &out).unwrap();
    let deb = build_deb("cofferd", Some("cuda"), staging, 1, &out).unwrap();
    let field = |name: &str| sh(&format!("dpkg-deb -f {} {name}", deb.display()));
    assert_eq!(field("Package").trim(), "cofferd-cuda");
    for relation in ["Provides", "Conflicts", "Replaces"] {
        assert_eq!(field(relation).trim(), "cofferd", "{relation}");
    }
    let depends = field("Depends");
    assert!(
        depends.contains("libc6 (>= ") && depends.contains("passwd"),
        "{depends}"
    );
    // The same files as cofferd's package, and the libraries.
    let files = |deb: &std::path::Path| -> Vec<String> {
        sh(&format!("dpkg-deb -c {}", deb.display()))
            .lines()
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .filter(|p| !p.ends_with('/'))
            .collect()
    };
    // Debian's own copyright and changelog go under the package's name.
    let cpu_files: Vec<String> = files(&cpu)
        .into_iter()
        .map(|f| {
            if f.ends_with("/copyright") || f.ends_with("/changelog.Debian.gz") {
                f.replace("/doc/cofferd/", "/doc/cofferd-cuda/")
            } else {
                f
            }
        })
        .collect();
    let cuda_files = files(&deb);
    for f in &cpu_files {
        assert!(cuda_files.contains(f), "cofferd-cuda lacks {f}");
    }
    let extra: Vec<&String> = cuda_files
        .iter()
        .filter(|f| !cpu_files.contains(f))
        .collect();
    assert_eq!(
        extra,
        LIBS.iter()
            .map(|l| format!("./usr/lib/coffer/cuda/{l}"))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>(),
        "cofferd-cuda adds only the private libraries"
    );
    let scripts = sh(&format!("dpkg-deb -I {} postinst", deb.display()));
    assert!(
        scripts.contains("/usr/lib/coffer/setup-cofferd"),
        "{scripts}"
    );

    assert_lintian_clean(std::slice::from_ref(&deb));

    let rpm = build_rpm("daemon", Some("cuda"), staging, &out).unwrap();
    let query = |what: &str| sh(&format!("rpm -qp {what} {}", rpm.display()));
    assert_eq!(query("--qf %{NAME}").trim(), "cofferd-cuda");
    assert!(query("--provides").lines().any(|l| l.trim() == "cofferd"));
    assert!(query("--conflicts").lines().any(|l| l.trim() == "cofferd"));
    let requires = query("--requires");
    assert!(
        !requires.contains("libcublas"),
        "rpm must not look for the private cuBLAS elsewhere:\n{requires}"
    );
    let listed = query("-l");
    for lib in LIBS {
        assert!(
            listed.contains(&format!("/usr/lib/coffer/cuda/{lib}")),
            "{listed}"
        );
    }
    let config = query("-c");
    assert_eq!(config.trim(), "/etc/coffer/cofferd.toml");
}
