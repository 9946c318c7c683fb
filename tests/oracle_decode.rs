//! Bit-exact decode against ggml's reference decoders (the `gguf` PyPI package; ggml's C
//! library for Q8_K, which gguf lacks): thousands of random blocks of every type, and every
//! tensor of both real models. Bytes of the f32 results are compared, not a tolerance.
mod common;

use std::collections::BTreeMap;

use common::{oracle, read_f32, tmpdir, Rng};
use finetune::gguf::{GgufFile, GgufModel, GgufWriter, Value};
use finetune::quant::{self, GgmlType};
use sha2::{Digest, Sha256};

#[test]
fn random_blocks_of_every_type_decode_like_ggml() {
    let dir = tmpdir("decode-random");
    let mut rng = Rng(42);
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("test".into()));
    let mut data = BTreeMap::new();
    let types = common::random_blocks::decodable_types();
    for &ty in &types {
        // 64 rows × 32 blocks = 2048 blocks per type
        let blocks = common::random_blocks::random_blocks(ty, 2048, &mut rng);
        let name = format!("t.{}", ty.name());
        w.add_tensor(&name, ty, &[32 * ty.block_size() as u64, 64]).unwrap();
        data.insert(name, (ty, blocks));
    }
    let path = dir.join("random.gguf");
    let mut sink = w.create(&path).unwrap();
    while let Some((name, _, _)) = sink.expected() {
        let name = name.to_string();
        sink.write_tensor(&data[&name].1).unwrap();
    }
    sink.finish().unwrap();

    // Our reader gives back the same bytes.
    let f = GgufFile::open(&path).unwrap();
    for (name, (_, bytes)) in &data {
        assert_eq!(f.tensor(name).unwrap().data, &bytes[..], "{name}: reader bytes");
    }

    let outdir = dir.join("deq");
    let listed = oracle(&["dequant", path.to_str().unwrap(), outdir.to_str().unwrap()]);
    assert_eq!(listed["tensors"].as_array().unwrap().len(), types.len(), "gguf.GGUFReader saw all tensors");
    for (name, (ty, bytes)) in &data {
        let want = read_f32(&outdir.join(format!("{name}.f32")));
        let mut ours = vec![0f32; want.len()];
        quant::decode_scalar(*ty, bytes, &mut ours).unwrap();
        let mut fast = vec![0f32; want.len()];
        quant::decode(*ty, bytes, &mut fast).unwrap();
        for i in 0..want.len() {
            assert_eq!(
                ours[i].to_bits(),
                want[i].to_bits(),
                "{ty}: element {i} (block {}): ours {} vs ggml {}",
                i / ty.block_size(),
                ours[i],
                want[i]
            );
            assert_eq!(fast[i].to_bits(), want[i].to_bits(), "{ty} fast path: element {i}");
        }
    }
    eprintln!("bit-exact on 2048 random blocks each of: {:?}", types.iter().map(|t| t.name()).collect::<Vec<_>>());
}

fn our_hashes(m: &GgufModel) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for info in m.tensor_infos() {
        let v = m.tensor(&info.name).unwrap();
        let n = info.n_elements() as usize;
        let mut y = vec![0f32; n];
        quant::decode_par(info.ty, v.data, &mut y).unwrap();
        let mut s = vec![0f32; n];
        quant::decode_scalar(info.ty, v.data, &mut s).unwrap();
        assert!(y.iter().zip(&s).all(|(a, b)| a.to_bits() == b.to_bits()), "{}: SIMD and scalar decode differ", info.name);
        let mut h = Sha256::new();
        for x in &y {
            h.update(x.to_le_bytes());
        }
        out.insert(info.name.clone(), format!("{:x}", h.finalize()));
    }
    out
}

fn check_model(path: &std::path::Path) {
    let m = GgufModel::open(path).unwrap();
    let ours = our_hashes(&m);
    let theirs = oracle(&["hashes", path.to_str().unwrap()]);
    let theirs = theirs.as_object().unwrap();
    assert_eq!(ours.len(), theirs.len(), "tensor count");
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for (name, h) in &ours {
        let t = &theirs[name];
        assert_eq!(h, t["sha256"].as_str().unwrap(), "{}: tensor {name} ({}) decodes differently", path.display(), t["type"]);
        *by_type.entry(t["type"].as_str().unwrap().to_string()).or_default() += 1;
    }
    eprintln!("{}: all {} tensors bit-exact ({by_type:?})", path.display(), ours.len());
}

#[test]
fn every_tensor_of_smollm2_decodes_like_ggml() {
    check_model(&common::smollm());
}

#[test]
fn every_tensor_of_gemma3_decodes_like_ggml() {
    check_model(&common::gemma());
}

#[test]
fn types_without_decoder_are_reported() {
    assert!(!GgmlType::IQ2_XXS.can_decode());
    let err = quant::decode(GgmlType::IQ2_XXS, &[0u8; 66], &mut [0f32; 256]).unwrap_err();
    assert!(err.to_string().contains("IQ2_XXS"), "{err}");
}
