//! compressed-tensors `pack-quantized` and EXL2 weight decoders against references.
//!
//! * pack-quantized: fixtures quantized by llm-compressor (tests/oracle/make_ct.py, built by
//!   tests/oracle/setup.sh into the cache); every quantized module's `decode_rows` equals
//!   compressed-tensors' own `PackedQuantizationCompressor.decompress`, bit for bit.
//! * EXL2: exllamav2 needs CUDA, so the reference here is an independent numpy packer and
//!   dequantizer (tests/oracle/exl2_ref.py); tests/gpu/exl2_check.sh is the GPU check.
//! * Broken inputs: clear errors naming the file and tensor, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use finetune::model::ModelError;
use finetune::safetensors::{Dtype, SafetensorsFile, SafetensorsWriter, TensorView};
use finetune::weights::{ctensors, exl2, QuantWeight, Weight, WeightFormat};
use serde_json::Value as Json;

const CT_FIXTURES: [&str; 6] = ["w4g128_sym", "w4g128_asym", "w8_channel", "mixed", "gptq_w4g64", "w4g128_asym_f16"];

fn ct_root() -> PathBuf {
    let cache = match std::env::var("FINETUNE_CACHE") {
        Ok(c) => PathBuf::from(c),
        Err(_) => std::env::var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"))
            .join("finetune"),
    };
    cache.join("hf-quant/ct")
}

/// A float32 `.npy` (C order): its shape and values.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY", "{}", path.display());
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let dims = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = dims.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let vals: Vec<f32> = b[start + hlen..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(vals.len(), shape.iter().product::<usize>(), "{}", path.display());
    (shape, vals)
}

fn json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Every row through `decode_rows` (in uneven row chunks) and some through `decode_cols` (in
/// 32-column pieces) must equal `want` bit for bit. Returns the number of values compared.
fn assert_exact(w: &dyn QuantWeight, want: &[f32], what: &str) -> usize {
    let (n, k) = (w.n_out(), w.n_in());
    assert_eq!(want.len(), n * k, "{what}");
    let mut got = vec![0f32; n * k];
    let mut r = 0;
    while r < n {
        let r1 = (r + 7).min(n);
        w.decode_rows(r, r1, &mut got[r * k..r1 * k]);
        r = r1;
    }
    for (i, (g, e)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == e.to_bits(), "{what}: W[{}, {}] = {g:e}, the reference has {e:e}", i / k, i % k);
    }
    for r in [0, n / 2, n - 1] {
        let mut c0 = 0;
        while c0 < k {
            let c1 = (c0 + 64).min(k);
            let mut part = vec![0f32; c1 - c0];
            w.decode_cols(r, c0, c1, &mut part);
            assert!(
                part.iter().zip(&want[r * k + c0..r * k + c1]).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: decode_cols row {r} [{c0}, {c1})"
            );
            c0 = c1;
        }
    }
    n * k
}

fn fixture_missing(dir: &Path) -> String {
    format!("ORACLE MISSING: {} not built. Run `bash tests/oracle/setup.sh` (the README's test command does).", dir.display())
}

#[test]
fn pack_quantized_matches_compressed_tensors_decompression_bit_for_bit() {
    let mut total = (0, 0, 0);
    for name in CT_FIXTURES {
        let dir = ct_root().join(name);
        assert!(dir.join("oracle/manifest.json").is_file(), "{}", fixture_missing(&dir));
        let st = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
        let qcfg = json(&dir.join("config.json"))["quantization_config"].clone();
        let manifest = json(&dir.join("oracle/manifest.json"));
        let get = |t: &str| st.get(t);
        let quantized = manifest["quantized"].as_object().unwrap();
        assert!(!quantized.is_empty(), "{name}: nothing quantized");
        for (prefix, shape) in quantized {
            let (n_out, n_in) = (shape[0].as_u64().unwrap() as usize, shape[1].as_u64().unwrap() as usize);
            let w = ctensors::open(&get, prefix, &qcfg, n_in, n_out).unwrap_or_else(|e| panic!("{name} {prefix}: {e}"));
            assert!(matches!(w.format(), WeightFormat::PackQuantized(_)), "{name} {prefix}: {}", w.format());
            let (oshape, want) = read_npy(&dir.join("oracle").join(format!("{prefix}.npy")));
            assert_eq!(oshape, [n_out, n_in]);
            total.1 += assert_exact(w.as_ref(), &want, &format!("{name} {prefix}"));
            total.0 += 1;
        }
        // Modules the config leaves dense (ignore list, lm_head) come back as their float weight.
        for prefix in manifest["dense"].as_array().unwrap() {
            let prefix = prefix.as_str().unwrap();
            let v = st.get(&format!("{prefix}.weight")).unwrap();
            let (n_out, n_in) = (v.shape[0], v.shape[1]);
            let w = ctensors::open(&get, prefix, &qcfg, n_in, n_out).unwrap();
            assert!(matches!(w.format(), WeightFormat::Ggml(_)), "{name} {prefix} should be dense, is {}", w.format());
            let mut got = vec![0f32; n_in * n_out];
            w.decode_rows(0, n_out, &mut got);
            assert_eq!(got, v.to_f32().unwrap(), "{name} {prefix}");
            total.2 += 1;
        }
    }
    eprintln!("pack-quantized: {} modules ({} values) bit-exact vs compressed-tensors, {} dense modules", total.0, total.1, total.2);
    assert!(total.0 >= 80 && total.2 >= 7);
}

/// Build the EXL2 fixture with the independent numpy script into a fresh directory.
fn exl2_fixture() -> PathBuf {
    let dir = common::tmpdir("exl2");
    let out =
        Command::new(common::python()).arg(common::root().join("tests/oracle/exl2_ref.py")).arg(&dir).output().expect("run exl2_ref.py");
    assert!(out.status.success(), "exl2_ref.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    dir
}

#[test]
fn exl2_matches_the_independent_reference_bit_for_bit() {
    let dir = exl2_fixture();
    let st = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
    let qcfg = json(&dir.join("config.json"))["quantization_config"].clone();
    let manifest = json(&dir.join("oracle/manifest.json"));
    let get = |t: &str| st.get(t);
    let mut values = 0;
    for (prefix, shape) in manifest["quantized"].as_object().unwrap() {
        let (n_out, n_in) = (shape[0].as_u64().unwrap() as usize, shape[1].as_u64().unwrap() as usize);
        let w = exl2::open(&get, prefix, &qcfg, n_in, n_out).unwrap_or_else(|e| panic!("{prefix}: {e}"));
        assert_eq!(w.format(), WeightFormat::Exl2);
        let (_, want) = read_npy(&dir.join("oracle").join(format!("{prefix}.npy")));
        assert!(
            want.iter().any(|&x| x != 0.0) && want.iter().any(|x| x.abs() < 6.1e-5 && *x != 0.0),
            "{prefix}: the fixture should reach f16 subnormals"
        );
        values += assert_exact(w.as_ref(), &want, prefix);
    }
    eprintln!("EXL2: {} modules ({values} values) bit-exact vs tests/oracle/exl2_ref.py", manifest["quantized"].as_object().unwrap().len());
}

/// The tensors of `st`, with `edit` applied: `None` drops a tensor, `Some` replaces it.
type Edit<'e> = &'e dyn Fn(&str, Dtype, &[usize], &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)>;

fn rebuilt(st: &SafetensorsFile, edit: Edit<'_>) -> SafetensorsFile {
    let mut w = SafetensorsWriter::new();
    for v in st.views() {
        if let Some((d, s, b)) = edit(v.name, v.dtype, v.shape, v.data) {
            w.add(v.name, d, &s, b).unwrap();
        }
    }
    SafetensorsFile::from_bytes("broken/model.safetensors", w.to_bytes()).unwrap()
}

fn keep(_: &str, d: Dtype, s: &[usize], b: &[u8]) -> Option<(Dtype, Vec<usize>, Vec<u8>)> {
    Some((d, s.to_vec(), b.to_vec()))
}

fn i32s(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `ctensors::open` or `exl2::open`.
type Opener = for<'a> fn(&dyn Fn(&str) -> Option<TensorView<'a>>, &str, &Json, usize, usize) -> Result<Weight<'a>, ModelError>;

/// `open` on the edited file must fail with a message naming the file and containing `want`.
fn expect_err(open: Opener, st: &SafetensorsFile, prefix: &str, qcfg: &Json, (n_in, n_out): (usize, usize), want: &[&str]) {
    let get = |t: &str| st.get(t);
    let msg = match open(&get, prefix, qcfg, n_in, n_out) {
        Ok(_) => panic!("{prefix}: broken input accepted (wanted {want:?})"),
        Err(e) => e.to_string(),
    };
    for w in want {
        assert!(msg.contains(w), "message {msg:?} lacks {w:?}");
    }
}

#[test]
fn exl2_broken_inputs_are_clear_errors() {
    let dir = exl2_fixture();
    let st = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
    let qcfg = json(&dir.join("config.json"))["quantization_config"].clone();
    let p = "model.layers.0.self_attn.q_proj";
    let dims = (240, 200);
    let ok = rebuilt(&st, &keep);
    let get = |t: &str| ok.get(t);
    assert!(exl2::open(&get, p, &qcfg, dims.0, dims.1).is_ok());
    let qw = format!("{p}.q_weight");
    // Truncated: q_weight one qrow short.
    let f = rebuilt(&st, &|n, d, s, b| {
        if n == qw {
            Some((d, vec![s[0] - 1, s[1]], b[..b.len() - 4 * s[1]].to_vec()))
        } else {
            keep(n, d, s, b)
        }
    });
    expect_err(exl2::open, &f, p, &qcfg, dims, &["broken/model.safetensors", "q_groups", "qrow"]);
    // Wrong dtype.
    let f = rebuilt(&st, &|n, d, s, b| {
        if n.ends_with("q_scale_max") {
            let v: Vec<f32> = b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
            Some((Dtype::F32, s.to_vec(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        } else {
            keep(n, d, s, b)
        }
    });
    expect_err(exl2::open, &f, p, &qcfg, dims, &["broken/model.safetensors", "q_proj.q_scale_max", "dtype F32, expected F16"]);
    // q_groups inconsistent: the 2-bit group's start moved so the rows no longer sum to K.
    let f = rebuilt(&st, &|n, d, s, b| {
        if n == format!("{p}.q_groups") {
            let mut g: Vec<i16> = b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
            g[3] -= 2;
            Some((d, s.to_vec(), g.iter().flat_map(|x| x.to_le_bytes()).collect()))
        } else {
            keep(n, d, s, b)
        }
    });
    expect_err(exl2::open, &f, p, &qcfg, dims, &["q_proj.q_groups"]);
    // An unsupported width, and widths that increase.
    for (i, v, want) in [(0usize, 7i16, "7 bits is not an EXL2 width"), (4, 8, "must not increase")] {
        let f = rebuilt(&st, &|n, d, s, b| {
            if n == format!("{p}.q_groups") {
                let mut g: Vec<i16> = b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
                g[i] = v;
                Some((d, s.to_vec(), g.iter().flat_map(|x| x.to_le_bytes()).collect()))
            } else {
                keep(n, d, s, b)
            }
        });
        expect_err(exl2::open, &f, p, &qcfg, dims, &["q_proj.q_groups", want]);
    }
    // q_invperm with a duplicate, and out of range.
    for (v, want) in [(1, "repeats row"), (240, "outside 0..240"), (-1, "outside")] {
        let f = rebuilt(&st, &|n, d, s, b| {
            if n == format!("{p}.q_invperm") {
                let mut g: Vec<i32> = b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                g[7] = if v == 1 { g[3] } else { v };
                Some((d, s.to_vec(), i32s(&g)))
            } else {
                keep(n, d, s, b)
            }
        });
        expect_err(exl2::open, &f, p, &qcfg, dims, &["q_proj.q_invperm", want]);
    }
    // Missing tensor; q_perm not the inverse; a model shape that disagrees; another quant_method.
    let f = rebuilt(&st, &|n, d, s, b| if n.ends_with("q_proj.q_scale") { None } else { keep(n, d, s, b) });
    expect_err(exl2::open, &f, p, &qcfg, dims, &["q_proj.q_scale", "missing"]);
    let k = "model.layers.0.self_attn.k_proj";
    let f = rebuilt(&st, &|n, d, s, b| {
        if n == format!("{k}.q_perm") {
            let mut g: Vec<i32> = b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            g.swap(0, 1);
            Some((d, s.to_vec(), i32s(&g)))
        } else {
            keep(n, d, s, b)
        }
    });
    expect_err(exl2::open, &f, k, &qcfg, (128, 96), &["k_proj.q_perm", "not the inverse"]);
    expect_err(exl2::open, &ok, p, &qcfg, (240, 260), &["q_proj.q_weight", "expected [qrows, 288]"]);
    expect_err(exl2::open, &ok, p, &qcfg, (256, 200), &["q_proj.q_invperm", "expected [256]"]);
    expect_err(exl2::open, &ok, p, &serde_json::json!({"quant_method": "gptq"}), dims, &["quant_method is 'gptq', not 'exl2'"]);
    // A view whose bytes are shorter than its shape (a hand-made TensorView; the safetensors
    // reader itself refuses such files).
    let real = ok.get(&qw).unwrap();
    let short = TensorView { data: &real.data[..real.data.len() - 4], ..real };
    let get = |t: &str| if t == qw { Some(short) } else { ok.get(t) };
    let msg = exl2::open(&get, p, &qcfg, dims.0, dims.1).unwrap_err().to_string();
    assert!(msg.contains("q_proj.q_weight") && msg.contains("bytes of data"), "{msg}");
}

#[test]
fn pack_quantized_broken_inputs_are_clear_errors() {
    let dir = ct_root().join("mixed");
    assert!(dir.join("oracle/manifest.json").is_file(), "{}", fixture_missing(&dir));
    let st = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
    let qcfg = json(&dir.join("config.json"))["quantization_config"].clone();
    // q_proj: int3, group 64, asymmetric; [256, 256].
    let p = "model.layers.0.self_attn.q_proj";
    let dims = (256, 256);
    let ok = rebuilt(&st, &keep);
    let get = |t: &str| ok.get(t);
    assert!(ctensors::open(&get, p, &qcfg, 256, 256).is_ok());
    let wp = format!("{p}.weight_packed");
    // Truncated packed rows; wrong dtype; missing zero point; missing scale.
    let f = rebuilt(&st, &|n, d, s, b| {
        if n == wp {
            let rows: Vec<u8> = b.chunks_exact(4 * s[1]).flat_map(|r| r[..4 * (s[1] - 1)].to_vec()).collect();
            Some((d, vec![s[0], s[1] - 1], rows))
        } else {
            keep(n, d, s, b)
        }
    });
    expect_err(
        ctensors::open,
        &f,
        p,
        &qcfg,
        dims,
        &["broken/model.safetensors", "q_proj.weight_packed", "shape [256, 23], expected [256, 24]"],
    );
    let f = rebuilt(&st, &|n, d, s, b| if n == wp { Some((Dtype::U32, s.to_vec(), b.to_vec())) } else { keep(n, d, s, b) });
    expect_err(ctensors::open, &f, p, &qcfg, dims, &["q_proj.weight_packed", "dtype U32, expected I32"]);
    let f = rebuilt(&st, &|n, d, s, b| if n.ends_with("q_proj.weight_zero_point") { None } else { keep(n, d, s, b) });
    expect_err(ctensors::open, &f, p, &qcfg, dims, &["q_proj.weight_zero_point", "missing", "group_0"]);
    let f = rebuilt(&st, &|n, d, s, b| if n.ends_with("q_proj.weight_scale") { None } else { keep(n, d, s, b) });
    expect_err(ctensors::open, &f, p, &qcfg, dims, &["q_proj.weight_scale", "missing"]);
    // weight_shape disagreeing with the model; a g_idx pointing past the groups.
    expect_err(ctensors::open, &ok, p, &qcfg, (256, 128), &["q_proj.weight_packed", "expected [128, 24]"]);
    let f = rebuilt(&st, &|n, d, s, b| {
        if n == wp {
            keep(n, d, s, b)
        } else if n == format!("{p}.weight_shape") {
            Some((d, s.to_vec(), [256i64, 250].iter().flat_map(|x| x.to_le_bytes()).collect()))
        } else {
            keep(n, d, s, b)
        }
    });
    expect_err(ctensors::open, &f, p, &qcfg, dims, &["q_proj.weight_shape", "[256, 250]"]);
    let mut w = SafetensorsWriter::new();
    for v in st.views() {
        w.add(v.name, v.dtype, v.shape, v.data.to_vec()).unwrap();
    }
    let mut g: Vec<i32> = (0..256).map(|k| k / 64).collect();
    g[100] = 4;
    w.add(&format!("{p}.weight_g_idx"), Dtype::I32, &[256], i32s(&g)).unwrap();
    let f = SafetensorsFile::from_bytes("broken/model.safetensors", w.to_bytes()).unwrap();
    expect_err(ctensors::open, &f, p, &qcfg, dims, &["q_proj.weight_g_idx", "entry 100 is 4, outside the 4 groups"]);
    let mut w = SafetensorsWriter::new();
    for v in st.views() {
        w.add(v.name, v.dtype, v.shape, v.data.to_vec()).unwrap();
    }
    g[100] = 0;
    w.add(&format!("{p}.weight_g_idx"), Dtype::I32, &[256], i32s(&g)).unwrap();
    let f = SafetensorsFile::from_bytes("broken/model.safetensors", w.to_bytes()).unwrap();
    expect_err(ctensors::open, &f, p, &qcfg, dims, &["q_proj.weight_g_idx", "group 0 has 65 inputs, the group size is 64"]);
    // Config problems: another format, bits out of range, a dense module whose weight is missing.
    let mut c = qcfg.clone();
    c["config_groups"]["group_0"]["format"] = "float-quantized".into();
    expect_err(ctensors::open, &ok, p, &c, dims, &["quantization_config", "format 'float-quantized' is not supported"]);
    let mut c = qcfg.clone();
    c["config_groups"]["group_0"]["weights"]["num_bits"] = 12.into();
    expect_err(ctensors::open, &ok, p, &c, dims, &["num_bits is 12"]);
    let mut c = qcfg.clone();
    c["ignore"] = serde_json::json!([p]);
    expect_err(ctensors::open, &ok, p, &c, dims, &["q_proj.weight", "missing", "weight_packed is there"]);
}

#[test]
fn g_idx_picks_each_inputs_group() {
    // Activation order ("group" actorder, older llm-compressor releases): the scale of input k
    // is scale[:, g_idx[k]]. A g_idx equal to k / G must give the same matrix as none; a
    // shuffled one must give, column by column, the group it names.
    let dir = ct_root().join("w4g128_asym");
    assert!(dir.join("oracle/manifest.json").is_file(), "{}", fixture_missing(&dir));
    let st = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
    let qcfg = json(&dir.join("config.json"))["quantization_config"].clone();
    let p = "model.layers.0.mlp.down_proj"; // [256, 384]: 3 groups of 128
    let (n_in, n_out) = (384, 256);
    let get = |t: &str| st.get(t);
    let plain = ctensors::open(&get, p, &qcfg, n_in, n_out).unwrap();
    let mut base = vec![0f32; n_in * n_out];
    plain.decode_rows(0, n_out, &mut base);
    for shuffled in [false, true] {
        let g: Vec<i32> = (0..n_in as i32).map(|k| if shuffled { (k * 7 + 1) % 3 } else { k / 128 }).collect();
        let mut w = SafetensorsWriter::new();
        for v in st.views() {
            w.add(v.name, v.dtype, v.shape, v.data.to_vec()).unwrap();
        }
        w.add(&format!("{p}.weight_g_idx"), Dtype::I32, &[n_in], i32s(&g)).unwrap();
        let f = SafetensorsFile::from_bytes("g_idx/model.safetensors", w.to_bytes()).unwrap();
        let get = |t: &str| f.get(t);
        let m = ctensors::open(&get, p, &qcfg, n_in, n_out).unwrap();
        let mut got = vec![0f32; n_in * n_out];
        m.decode_rows(0, n_out, &mut got);
        if !shuffled {
            assert_eq!(got, base);
            continue;
        }
        // Recompute from the raw tensors: q and zero point from the packed streams, scale bf16.
        let scale = st.get(&format!("{p}.weight_scale")).unwrap().to_f32().unwrap();
        let packed = st.get(&format!("{p}.weight_packed")).unwrap().data;
        let zp = st.get(&format!("{p}.weight_zero_point")).unwrap().data;
        let nib = |bytes: &[u8], word: usize, i: usize| {
            ((u32::from_le_bytes(bytes[4 * word..4 * word + 4].try_into().unwrap()) >> (4 * i)) & 15) as i32 - 8
        };
        for n in [0, 17, 255] {
            for k in 0..n_in {
                let gk = g[k] as usize;
                let q = nib(packed, n * (n_in / 8) + k / 8, k % 8);
                let z = nib(zp, (n / 8) * 3 + gk, n % 8);
                let want = half::bf16::from_f32((q - z) as f32 * scale[n * 3 + gk]).to_f32();
                assert_eq!(got[n * n_in + k].to_bits(), want.to_bits(), "W[{n}, {k}]");
            }
        }
    }
}

/// The GPU check (tests/gpu/exl2_check.sh runs it): every linear layer of a model converted by
/// exllamav2 decodes to exllamav2's own `get_weight_tensor_dq()`, bit for bit. Needs the dumps
/// (`FINETUNE_EXL2_DUMP`) and the converted directory (`FINETUNE_EXL2_DIR`).
#[test]
#[ignore = "needs exllamav2 dumps from a CUDA machine: bash tests/gpu/exl2_check.sh"]
fn exl2_matches_exllamav2_dumps() {
    let dump = PathBuf::from(std::env::var("FINETUNE_EXL2_DUMP").expect("FINETUNE_EXL2_DUMP"));
    let dir = PathBuf::from(std::env::var("FINETUNE_EXL2_DIR").expect("FINETUNE_EXL2_DIR"));
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            files.push(SafetensorsFile::open(&p).unwrap());
        }
    }
    assert!(!files.is_empty(), "no .safetensors in {}", dir.display());
    let get = |t: &str| files.iter().find_map(|f| f.get(t));
    let qcfg = json(&dir.join("config.json"))["quantization_config"].clone();
    let manifest = json(&dump.join("oracle/manifest.json"));
    let mut values = 0;
    for (prefix, shape) in manifest["quantized"].as_object().unwrap() {
        let (n_out, n_in) = (shape[0].as_u64().unwrap() as usize, shape[1].as_u64().unwrap() as usize);
        let w = exl2::open(&get, prefix, &qcfg, n_in, n_out).unwrap_or_else(|e| panic!("{prefix}: {e}"));
        let (_, want) = read_npy(&dump.join("oracle").join(format!("{prefix}.npy")));
        values += assert_exact(w.as_ref(), &want, prefix);
    }
    eprintln!("EXL2: {} layers ({values} values) bit-exact vs exllamav2", manifest["quantized"].as_object().unwrap().len());
}
