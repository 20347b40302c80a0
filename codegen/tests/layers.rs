//! The module layers of `slmtvm-codegen` point one way (see the crate's module comment): a
//! file of top-level module `m` may name `crate::x` (outside comments) only for a module `x`
//! of a lower layer, or `m` itself. A new upward arrow fails here, naming the file and line.

use std::path::Path;

/// Each top-level module's layer, lowest first.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("abi", 0),
    ("math", 0),
    ("asm", 1),
    ("emit", 2),
    ("layout", 3),
    ("pack", 3),
    ("plan", 4),
    ("kernels", 5),
    ("object", 6),
    ("header", 7),
    ("manifest", 7),
];

fn layer(m: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == m).map(|&(_, l)| l)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_module_dependency_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    let mut seen = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs");
        if top == "lib" {
            continue;
        }
        let own = layer(top).unwrap_or_else(|| panic!("{}: module {top} has no layer in LAYERS", rel.display()));
        for (n, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let ident = |s: &str| -> String {
                s.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
            };
            let names: Vec<String> = code
                .split("crate::")
                .skip(1)
                .flat_map(|part| match part.strip_prefix('{') {
                    // `crate::{a, b::c}`: the first segment of each.
                    Some(list) => list.split('}').next().unwrap_or("").split(',').map(ident).collect(),
                    None => vec![ident(part)],
                })
                .collect();
            for name in names {
                // `crate::Result` and `crate::Error` are the error module's, re-exported.
                let Some(l) = (if name == "Result" || name == "Error" { Some(0) } else { layer(&name) }) else {
                    bad.push(format!("{}:{}: crate::{name} has no layer in LAYERS", rel.display(), n + 1));
                    continue;
                };
                seen += 1;
                if name != top && l >= own {
                    bad.push(format!(
                        "{}:{}: {top} (layer {own}) uses crate::{name} (layer {l})",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(seen > 50, "only {seen} crate:: paths found: is the scan reading the sources?");
    assert!(bad.is_empty(), "upward or unknown module dependencies:\n{}", bad.join("\n"));
}
