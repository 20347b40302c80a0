//! The manifest a build returns ([`slmtvm_codegen::Compiled::manifest`]): what codegen fills,
//! the provenance left to the caller, and the JSON reading back to the same manifest.

use slmtvm_codegen::manifest::{Manifest, SymbolInfo};
use slmtvm_ir::Graph;
use slmtvm_targets::Target;

fn relu() -> Graph {
    slmtvm_ir::text::parse(
        "graph \"m\" {\n  input %x: f32[n<=8, 3]\n  %y: f32[n<=8, 3] = Unary(Relu) %x @\"r\"\n  output %y\n}\n",
    )
    .unwrap()
}

#[test]
fn manifest_describes_the_build_and_reads_back() {
    let t = Target::from_spec("x86_64").unwrap();
    let c = slmtvm_codegen::compile(&relu(), "m", &t).unwrap();
    let m = &c.manifest;
    assert_eq!((m.name.as_str(), m.target.as_str()), ("m", t.name()));
    assert_eq!(m.symbols, vec![SymbolInfo { name: "n".into(), bound: 8 }]);
    assert_eq!(m.inputs[0].shape, vec![8, 3]);
    assert_eq!(m.inputs[0].dims, vec!["n".to_string(), "3".to_string()]);
    assert_eq!(m.inputs[0].bytes, 8 * 3 * 4);
    assert_eq!(m.arena_bytes, c.plan.arena_bytes);
    assert_eq!(m.kernel_list.len(), m.kernels);
    assert_eq!(m.kernel_list[0].op, "Relu");
    // The caller's provenance is absent until set, and the JSON reads back to the same
    // manifest (the kernels' lanes are not in it).
    let json = m.to_json();
    assert!(!json.contains("model_sha256") && !json.contains("optimizer") && json.ends_with("}\n"));
    let with = Manifest { model_sha256: Some("ab".into()), quantization: Some("q".into()), ..m.clone() };
    let back: Manifest = serde_json::from_str(&with.to_json()).unwrap();
    let mut want = with.clone();
    want.kernel_list.iter_mut().for_each(|k| k.lanes = 0);
    assert_eq!(back, want);
    assert!(m.summary().starts_with(&format!("m: {} (arena {} bytes", t.name(), m.arena_bytes)));
}
