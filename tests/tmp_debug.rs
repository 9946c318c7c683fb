mod common;
use finetune::gguf::GgufModel;
use finetune::model::{Model, Numerics};
fn lsm(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    row.iter().map(|&v| v as f64 - lse).collect()
}
#[test]
fn dbg() {
    let path = common::smollm();
    let dir = std::path::PathBuf::from(std::env::var("DBG_DIR").unwrap());
    let ids: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(dir.join("ids.json")).unwrap()).unwrap();
    let theirs = common::read_f32(&dir.join("out.f32"));
    let g = GgufModel::open(&path).unwrap();
    for num in [Numerics::F32, Numerics::Ggml] {
        let mut m = Model::load(&g).unwrap();
        m.numerics = num;
        let nv = m.cfg.n_vocab;
        let mut c = m.new_cache(64);
        let ours = m.logits(&m.forward(&ids, &mut c).unwrap());
        for p in 0..ids.len() {
            let (la, lb) = (lsm(&ours[p*nv..(p+1)*nv]), lsm(&theirs[p*nv..(p+1)*nv]));
            let kl: f64 = (0..nv).map(|j| lb[j].exp() * (lb[j] - la[j])).sum();
            let md = (0..nv).map(|j| (ours[p*nv+j] - theirs[p*nv+j]).abs()).fold(0f32, f32::max);
            eprintln!("{num:?} pos {p}: KL {kl:.2e} max|Δlogit| {md:.3e}");
        }
    }
}
