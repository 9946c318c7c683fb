//! GPTQ and AWQ-GEMM decoding against the real quantizer: `tests/oracle/make_gptq_awq.py`
//! quantizes a tiny random llama with GPTQModel on the CPU into GPTQ v1/v2 (2/3/4/8 bits,
//! sym/asym, act-order, group 32/64/128/whole row) and AWQ-GEMM (zero points, groups 32/64)
//! directories, and SmolLM2-135M into GPTQ (group 128 over 576 inputs: a partial last group) and
//! AWQ, and dumps GPTQModel's own dequantization of every quantized layer (its torch
//! kernels' forward on an identity input, in f16). Our `decode_rows` / `decode_cols` must equal
//! it bit for bit. Then hostile variants of the same tensors: clear errors, no panics.
//!
//! The fixtures are cached in `~/.cache/finetune/hf-quant/gptq-awq/` (built on first use, several
//! minutes on 2 cores; GPTQModel's venv comes from `tests/oracle/setup.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use finetune::safetensors::{Dtype, SafetensorsFile, SafetensorsWriter, TensorView};
use finetune::weights::{awq, gptq, Weight, WeightFormat};
use serde_json::Value;

fn cache_dir() -> PathBuf {
    if let Ok(c) = std::env::var("FINETUNE_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"));
    base.join("finetune")
}

/// The fixture directory, built by GPTQModel on first use.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = cache_dir().join("hf-quant/gptq-awq");
        if !dir.join(".done-v2").exists() {
            let py = cache_dir().join("venv-quant/bin/python");
            assert!(
                cache_dir().join("venv-quant/.quant-v1").exists(),
                "ORACLE MISSING: GPTQModel venv {} not set up. Run `bash tests/oracle/setup.sh`.",
                py.display()
            );
            common::smollm(); // its tokenizer is the fixtures' tokenizer
            eprintln!("hf-quant: building GPTQ/AWQ fixtures with GPTQModel into {} (first run: minutes)", dir.display());
            let st = Command::new(&py)
                .arg(common::root().join("tests/oracle/make_gptq_awq.py"))
                .arg(&dir)
                .status()
                .expect("run make_gptq_awq.py");
            assert!(st.success(), "make_gptq_awq.py failed ({st})");
        }
        dir
    })
}

/// Every fixture directory (a `config.json` with a `quantization_config`).
fn fixture_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("ref/ref.json").exists()).collect();
    v.sort();
    v
}

fn qcfg(dir: &Path) -> Value {
    let c: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    c["quantization_config"].clone()
}

fn open_with<'a>(
    get: &dyn Fn(&str) -> Option<TensorView<'a>>,
    prefix: &str,
    q: &Value,
    n_in: usize,
    n_out: usize,
) -> Result<Weight<'a>, finetune::model::ModelError> {
    match q["quant_method"].as_str() {
        Some("awq") => awq::open(get, prefix, q, n_in, n_out),
        _ => gptq::open(get, prefix, q, n_in, n_out),
    }
}

/// A raw little-endian f16 dump, widened to f32 (exactly).
fn read_f16(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
}

fn bits_equal(a: &[f32], b: &[f32]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count()
}

#[test]
fn decode_equals_gptqmodel_dequantization_bit_for_bit() {
    let dirs = fixture_dirs();
    let names: Vec<String> = dirs.iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).collect();
    // The fixture set covers what the formats vary in (a missing one would make this test weaker
    // without failing it).
    for want in [
        "gptq-v1-4b",
        "gptq-v2-4b",
        "gptq-v1-3b",
        "gptq-v2-2b",
        "gptq-v1-8b",
        "awq-gemm-4b",
        "-act",
        "-sym",
        "-asym",
        "smollm2-gptq",
        "smollm2-awq",
    ] {
        assert!(names.iter().any(|n| n.contains(want)), "no fixture '{want}' in {names:?}");
    }
    let mut total = 0usize;
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let q = qcfg(dir);
        let st = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
        let get = |n: &str| st.get(n);
        let refs: Value = serde_json::from_slice(&std::fs::read(dir.join("ref/ref.json")).unwrap()).unwrap();
        let refs = refs.as_object().unwrap();
        let layers: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let layers = layers["num_hidden_layers"].as_u64().unwrap() as usize;
        assert_eq!(refs.len(), 7 * layers, "{name}: 7 projections × {layers} layers dequantized by the reference");
        let mut act_order_seen = false;
        for (prefix, info) in refs {
            let (n_out, n_in) = (info["shape"][0].as_u64().unwrap() as usize, info["shape"][1].as_u64().unwrap() as usize);
            let want = read_f16(&dir.join("ref").join(format!("{prefix}.f16")));
            assert_eq!(want.len(), n_out * n_in);
            let w = open_with(&get, prefix, &q, n_in, n_out).unwrap_or_else(|e| panic!("{name}: {e}"));
            let bits = q["bits"].as_u64().unwrap() as u8;
            match w.format() {
                WeightFormat::Gptq { bits: b, .. } | WeightFormat::Awq { bits: b, .. } => assert_eq!(b, bits),
                f => panic!("{name}: format {f}"),
            }
            // Whole matrix.
            let mut got = vec![0f32; n_out * n_in];
            w.decode_rows(0, n_out, &mut got);
            let bad = bits_equal(&got, &want);
            if bad > 0 {
                let i = got.iter().zip(&want).position(|(x, y)| x.to_bits() != y.to_bits()).unwrap();
                panic!(
                    "{name}: {prefix}: {bad} of {} values differ from GPTQModel's; first at row {} col {}: ours {} theirs {}",
                    got.len(),
                    i / n_in,
                    i % n_in,
                    got[i],
                    want[i]
                );
            }
            // Panels that start and end off the eight-row words, and column ranges.
            let (r0, r1) = (3, n_out.min(21));
            let mut panel = vec![0f32; (r1 - r0) * n_in];
            w.decode_rows(r0, r1, &mut panel);
            assert_eq!(bits_equal(&panel, &want[r0 * n_in..r1 * n_in]), 0, "{name}: {prefix}: rows {r0}..{r1}");
            let cb = w.col_block();
            for r in [0, 5, n_out - 1] {
                let (c0, c1) = (cb, n_in.min(cb * 3));
                let mut cols = vec![0f32; c1 - c0];
                w.decode_cols(r, c0, c1, &mut cols);
                assert_eq!(bits_equal(&cols, &want[r * n_in + c0..r * n_in + c1]), 0, "{name}: {prefix}: row {r} cols {c0}..{c1}");
                let mut all = vec![0f32; n_in];
                w.decode_cols(r, 0, n_in, &mut all);
                assert_eq!(bits_equal(&all, &want[r * n_in..(r + 1) * n_in]), 0, "{name}: {prefix}: row {r}");
            }
            assert!(want.iter().any(|v| *v != 0.0), "{name}: {prefix}: the reference is all zeros");
            if let Some(g) = st.get(&format!("{prefix}.g_idx")) {
                let g: Vec<i32> = g.data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
                act_order_seen |= g.windows(2).any(|p| p[1] < p[0]);
            }
            total += 1;
        }
        assert_eq!(act_order_seen, name.contains("-act"), "{name}: act-order g_idx (non-monotonic) iff desc_act");
        eprintln!("{name}: {} layers equal GPTQModel's dequantization bit for bit", refs.len());
    }
    eprintln!("{total} layers in {} fixtures: bit-identical", dirs.len());
}

/// A copy of fixture `name`'s tensors with `edit` applied, as an in-memory safetensors file.
fn edited(name: &str, edit: impl Fn(&str, Dtype, &[usize], &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)>) -> SafetensorsFile {
    let dir = fixtures().join(name);
    let st = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
    let mut w = SafetensorsWriter::new();
    for v in st.views() {
        if let Some((dt, shape, bytes)) = edit(v.name, v.dtype, v.shape, v.data) {
            w.add(v.name, dt, &shape, bytes).unwrap();
        }
    }
    SafetensorsFile::from_bytes(dir.join("edited.safetensors"), w.to_bytes()).unwrap()
}

const Q: &str = "model.layers.0.self_attn.q_proj";

fn open_err(st: &SafetensorsFile, q: &Value, n_in: usize, n_out: usize) -> String {
    let get = |n: &str| st.get(n);
    match open_with(&get, Q, q, n_in, n_out) {
        Ok(w) => panic!("opened: {:?}", w.format()),
        Err(e) => e.to_string(),
    }
}

fn keep(_: &str, dt: Dtype, shape: &[usize], b: &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)> {
    Some((dt, shape.to_vec(), b.to_vec()))
}

#[test]
fn hostile_gptq_and_awq_tensors_are_clear_errors() {
    for fx in ["gptq-v1-4b-g32-asym-act", "awq-gemm-4b-g32"] {
        let q = qcfg(&fixtures().join(fx));
        let gptq = fx.starts_with("gptq");
        let ok = edited(fx, keep);
        let get = |n: &str| ok.get(n);
        open_with(&get, Q, &q, 128, 128).unwrap();
        let file = "edited.safetensors";

        // Truncated qweight: fewer rows than the shape implies.
        let st = edited(fx, |n, dt, s, b| {
            if n == format!("{Q}.qweight") {
                Some((dt, vec![s[0] - 1, s[1]], b[..(s[0] - 1) * s[1] * 4].to_vec()))
            } else {
                keep(n, dt, s, b)
            }
        });
        let e = open_err(&st, &q, 128, 128);
        assert!(e.contains(file) && e.contains(&format!("{Q}.qweight")) && e.contains("shape"), "{e}");

        // A view whose bytes are cut short (a `get` that hands out a truncated tensor).
        let short = |n: &str| {
            ok.get(n).map(|mut v| {
                if n.ends_with(".qweight") {
                    v.data = &v.data[..v.data.len() / 2];
                }
                v
            })
        };
        let e = match open_with(&short, Q, &q, 128, 128) {
            Ok(_) => panic!("opened a half-length qweight"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(&format!("{Q}.qweight")) && e.contains("bytes"), "{e}");

        // Wrong dtype: qweight as F32.
        let st = edited(fx, |n, dt, s, b| keep(n, if n == format!("{Q}.qweight") { Dtype::F32 } else { dt }, s, b));
        let e = open_err(&st, &q, 128, 128);
        assert!(e.contains(&format!("{Q}.qweight")) && e.contains("dtype F32"), "{e}");

        // Scales missing.
        let st = edited(fx, |n, dt, s, b| if n == format!("{Q}.scales") { None } else { keep(n, dt, s, b) });
        let e = open_err(&st, &q, 128, 128);
        assert!(e.contains(&format!("{Q}.scales")) && e.contains("missing"), "{e}");

        // Shape vs n_in / n_out.
        let e = open_err(&ok, &q, 256, 128);
        assert!(e.contains(Q) && e.contains("expected"), "{e}");

        // Unsupported bits.
        let mut q5 = q.clone();
        q5["bits"] = 5.into();
        let e = open_err(&ok, &q5, 128, 128);
        assert!(e.contains("config.json") && e.contains("quantization_config.bits") && e.contains("5-bit"), "{e}");

        // Group size that disagrees with the scales.
        let mut qg = q.clone();
        qg["group_size"] = 64.into();
        let e = open_err(&ok, &qg, 128, 128);
        assert!(e.contains(Q) && e.contains("shape"), "{e}");

        if gptq {
            // g_idx out of range (and negative).
            for bad in [4i32, -1, i32::MAX] {
                let st = edited(fx, |n, dt, s, b| {
                    let mut b = b.to_vec();
                    if n == format!("{Q}.g_idx") {
                        b[40..44].copy_from_slice(&bad.to_le_bytes());
                    }
                    Some((dt, s.to_vec(), b))
                });
                let e = open_err(&st, &q, 128, 128);
                assert!(e.contains(&format!("{Q}.g_idx")) && e.contains(&format!("g_idx[10] = {bad}")), "{e}");
            }
            // desc_act without g_idx.
            let st = edited(fx, |n, dt, s, b| if n == format!("{Q}.g_idx") { None } else { keep(n, dt, s, b) });
            let e = open_err(&st, &q, 128, 128);
            assert!(e.contains(&format!("{Q}.g_idx")) && e.contains("missing"), "{e}");
            // A checkpoint layout this does not read, a negative dynamic rule.
            let mut qf = q.clone();
            qf["checkpoint_format"] = "marlin".into();
            let e = open_err(&ok, &qf, 128, 128);
            assert!(e.contains("checkpoint_format") && e.contains("marlin"), "{e}");
            let mut qd = q.clone();
            qd["dynamic"] = serde_json::json!({"-:model\\.layers\\.0\\.self_attn\\..*": {}});
            let e = open_err(&ok, &qd, 128, 128);
            assert!(e.contains("excluded") && e.contains("dynamic"), "{e}");
        } else {
            let mut qv = q.clone();
            qv["version"] = "gemv".into();
            let e = open_err(&ok, &qv, 128, 128);
            assert!(e.contains("quantization_config.version") && e.contains("gemv"), "{e}");
            let mut qm = q.clone();
            qm["modules_to_not_convert"] = serde_json::json!(["self_attn.q_proj"]);
            let e = open_err(&ok, &qm, 128, 128);
            assert!(e.contains("modules_to_not_convert"), "{e}");
        }
    }
}

#[test]
fn gptq_dynamic_overrides_bits_and_group_per_module() {
    // The 3-bit fixture read under a config whose base says 4 bits / group 64, with a dynamic
    // rule giving this module's real 3 bits / group 32: decodes as the fixture; without the
    // rule the shapes disagree.
    let dir = fixtures().join("gptq-v1-3b-g32-asym-act");
    let st = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
    let get = |n: &str| st.get(n);
    let mut q = qcfg(&dir);
    q["bits"] = 4.into();
    q["group_size"] = 64.into();
    assert!(gptq::open(&get, Q, &q, 128, 128).is_err());
    q["dynamic"] = serde_json::json!({
        "-:model\\.layers\\.1\\..*": {},
        "+:model\\.layers\\.0\\.self_attn\\.q_proj": {"bits": 3, "group_size": 32},
    });
    let w = gptq::open(&get, Q, &q, 128, 128).unwrap();
    assert_eq!(w.format(), WeightFormat::Gptq { bits: 3, group: 32 });
    let want = read_f16(&dir.join("ref").join(format!("{Q}.f16")));
    let mut got = vec![0f32; 128 * 128];
    w.decode_rows(0, 128, &mut got);
    assert_eq!(bits_equal(&got, &want), 0);
}
