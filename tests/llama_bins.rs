//! Our adapters in llama.cpp's own command-line tools (built by tests/oracle/setup.sh from the
//! llama.cpp that llama-cpp-python 0.3.36 vendors): two adapters trained by `finetune` on SmolLM2
//! (samurai style, JSON→YAML; F32, the training default) give, greedy, the same text as
//! `finetune generate` with the same adapters and scales in
//! - `llama-completion --lora / --lora-scaled` (llama-cli is chat-only in this llama.cpp);
//! - `llama-server --lora A --lora B --lora-init-without-apply`, switched with
//!   `POST /lora-adapters` (hot swap) and with the per-request `lora` field of `/completion`,
//!   one adapter, a scale and both stacked;
//!
//! and `llama-export-lora` folds the two adapters into the same tensors as
//! `finetune merge --type F16` (names, shapes, types equal; merged values within one f16 step).
//! Every adapter and scale used changes the text, so an ignored adapter or scale fails.
//!
//! The LoRA matmuls are not bit-identical to llama.cpp's (the base model's logits are), so a
//! greedy text can part at a near tie: a JSON→YAML adapter of 8 steps, rank 4, gives "…sunlight.
//! When sunlight reaches our planet," in llama.cpp and "…enters the Earth's" in ours (llama.cpp
//! gives ours with the same values rounded to f16). The adapters below have no such tie on PROMPT.
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{bin, llama_tool, smollm, tmpdir};
use finetune::gguf::GgufModel;
use finetune::quant::GgmlType;

/// A raw prompt (SmolLM2's chat markup written out, no template applied by either tool) on which
/// base, A, A×0.5, B and A×0.5 + B all give different greedy texts.
const PROMPT: &str = "<|im_start|>user\nWhy is the sky blue?<|im_end|>\n<|im_start|>assistant\n";
const N: &str = "20";

struct Fixture {
    dir: PathBuf,
    model: PathBuf,
    /// Trained by `finetune` on the samurai style (all layers, q,v,o,up,down).
    a: PathBuf,
    /// Trained on JSON→YAML, the same tensors as `a` (llama-export-lora stacks only those).
    b: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tmpdir("llama-bins");
        let model = smollm();
        let train = |data: &str, out: &Path, steps: &str, rank: &str, alpha: &str, seq_len: &str| {
            let data = common::root().join("examples").join(data);
            finetune(&[
                "--model",
                s(&model),
                "--data",
                s(&data),
                "--out",
                s(out),
                "--steps",
                steps,
                "--grad-accum",
                "2",
                "--lr",
                "5e-3",
                "--rank",
                rank,
                "--alpha",
                alpha,
                "--seq-len",
                seq_len,
                "--targets",
                "q,v,o,up,down",
                "--quiet",
                "--threads",
                "2",
            ]);
        };
        let (a, b) = (dir.join("samurai.gguf"), dir.join("yaml.gguf"));
        train("style_degozaru.jsonl", &a, "12", "8", "32", "64");
        train("json_to_yaml.jsonl", &b, "12", "8", "16", "256");
        Fixture { dir, model, a, b }
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn finetune(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("run finetune");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "finetune {args:?} failed:\n{err}");
    String::from_utf8(out.stdout).expect("finetune printed non-UTF-8")
}

/// `finetune generate` greedy on PROMPT with `--lora PATH:SCALE` for each adapter (memoized).
fn ours(adapters: &[(&Path, f32)]) -> String {
    static MEMO: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let f = fixture();
    let mut args: Vec<String> =
        ["generate", "--model", s(&f.model), "--prompt", PROMPT, "-n", N, "--temp", "0", "--threads", "2"].map(String::from).to_vec();
    for (p, sc) in adapters {
        args.extend(["--lora".into(), format!("{}:{sc}", p.display())]);
    }
    let key = args.join("\u{1}");
    if let Some(t) = MEMO.get_or_init(Default::default).lock().unwrap().get(&key) {
        return t.clone();
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = finetune(&argv);
    // generate ends the text with one newline of its own.
    let text = out.strip_suffix('\n').unwrap_or_else(|| panic!("generate output without its final newline: {out:?}")).to_string();
    MEMO.get_or_init(Default::default).lock().unwrap().insert(key, text.clone());
    text
}

/// `llama-completion` greedy on PROMPT with the given adapter arguments; the generated text alone.
fn llama_completion(lora_args: &[String]) -> String {
    let f = fixture();
    let out = Command::new(llama_tool("llama-completion"))
        .args(["-m", s(&f.model), "-p", PROMPT, "-n", N, "--temp", "0", "--seed", "0", "-c", "256", "-t", "2"])
        .args(["-fa", "off", "-no-cnv", "--no-display-prompt", "--no-warmup"])
        .args(lora_args)
        .stdin(Stdio::null())
        .output()
        .expect("run llama-completion");
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "llama-completion {lora_args:?} failed ({}):\n{se}", out.status);
    // llama-completion prints the generated pieces, " [end of text]\n" when the model ends the
    // text, then "\n\n".
    let text = so.strip_suffix("\n\n").unwrap_or_else(|| panic!("unexpected llama-completion output {so:?}\n{se}"));
    text.strip_suffix(" [end of text]\n").unwrap_or(text).to_string()
}

#[test]
fn llama_completion_with_our_adapters_equals_generate() {
    let f = fixture();
    let (a, b) = (&f.a, &f.b);
    /// (name, llama-completion's adapter arguments, ours as PATH:SCALE)
    type Case<'a> = (&'a str, Vec<String>, Vec<(&'a Path, f32)>);
    let cases: Vec<Case> = vec![
        ("base", vec![], vec![]),
        ("--lora A", vec!["--lora".into(), s(a).into()], vec![(a, 1.0)]),
        ("--lora-scaled A:0.5", vec!["--lora-scaled".into(), format!("{}:0.5", a.display())], vec![(a, 0.5)]),
        ("--lora B", vec!["--lora".into(), s(b).into()], vec![(b, 1.0)]),
        (
            "--lora-scaled A:0.5 --lora B",
            vec!["--lora-scaled".into(), format!("{}:0.5", a.display()), "--lora".into(), s(b).into()],
            vec![(a, 0.5), (b, 1.0)],
        ),
    ];
    let (mut seen, mut seen_theirs): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for (name, args, adapters) in &cases {
        let (theirs, mine) = (llama_completion(args), ours(adapters));
        println!("{name}: llama-completion {theirs:?}\n{:w$}  finetune         {mine:?}", "", w = name.len());
        common::assert_same_text(name, "llama-completion", &theirs, &mine);
        assert!(!seen.contains(&mine), "{name}: the same text as an earlier case, so this case checks nothing: {mine:?}");
        assert!(!seen_theirs.contains(&theirs), "{name}: llama-completion gave an earlier case's text: {theirs:?}");
        seen.push(mine);
        seen_theirs.push(theirs);
    }
}

/// A llama-server process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(f: &Fixture) -> Server {
        // A free loopback port: bind port 0, note it, release it for the server.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = f.dir.join("llama-server.log");
        let child = Command::new(llama_tool("llama-server"))
            .args(["-m", s(&f.model), "--lora", s(&f.a), "--lora", s(&f.b), "--lora-init-without-apply"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-c", "512", "-np", "1", "-t", "2"])
            .args(["-fa", "off", "--no-warmup"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start llama-server");
        let mut srv = Server { child, port, log };
        let t0 = Instant::now();
        loop {
            if let Some(st) = srv.child.try_wait().unwrap() {
                panic!("llama-server exited ({st}) while starting:\n{}", srv.log_text());
            }
            if let Some((200, _)) = srv.try_request("GET", "/health", None) {
                return srv;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "llama-server not ready after 120 s:\n{}", srv.log_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.1 request (Connection: close); (status, body), or None if nothing answers.
    fn try_request(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Option<(u16, String)> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        c.write_all(head.as_bytes()).ok()?;
        c.write_all(body.as_bytes()).ok()?;
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).ok()?;
        let raw = String::from_utf8(raw).expect("llama-server answered non-UTF-8");
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
        Some((status, if chunked { dechunk(body) } else { body.to_string() }))
    }

    fn request(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> serde_json::Value {
        let (status, text) = self
            .try_request(method, path, body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer from llama-server:\n{}", self.log_text()));
        assert_eq!(status, 200, "{method} {path} → {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
    }

    /// Greedy `/completion` of PROMPT; `lora` = the per-request field, or None for the global scales.
    fn complete(&self, lora: Option<serde_json::Value>) -> String {
        let mut req = serde_json::json!({
            "prompt": PROMPT, "n_predict": N.parse::<u32>().unwrap(), "temperature": 0.0, "seed": 0, "cache_prompt": false
        });
        if let Some(l) = lora {
            req["lora"] = l;
        }
        let r = self.request("POST", "/completion", Some(&req));
        r["content"].as_str().unwrap_or_else(|| panic!("no content in {r}")).to_string()
    }
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.split(';').next().unwrap().trim(), 16).expect("chunk length");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").expect("chunk end");
    }
    out
}

#[test]
fn llama_server_hot_swap_and_per_request_lora_equal_generate() {
    use serde_json::json;
    let f = fixture();
    let (a, b) = (f.a.as_path(), f.b.as_path());
    let srv = Server::start(f);
    let list = srv.request("GET", "/lora-adapters", None);
    let listed: Vec<(u64, String, f64)> = list
        .as_array()
        .unwrap_or_else(|| panic!("/lora-adapters: {list}"))
        .iter()
        .map(|e| (e["id"].as_u64().unwrap(), e["path"].as_str().unwrap().to_string(), e["scale"].as_f64().unwrap()))
        .collect();
    let paths: Vec<(u64, &str)> = listed.iter().map(|(i, p, _)| (*i, p.as_str())).collect();
    assert_eq!(paths, vec![(0, s(a)), (1, s(b))], "{list}");

    let check = |name: &str, theirs: String, adapters: &[(&Path, f32)]| {
        let mine = ours(adapters);
        println!("{name}: llama-server {theirs:?}\n{:w$}  finetune     {mine:?}", "", w = name.len());
        common::assert_same_text(name, "llama-server", &theirs, &mine);
        mine
    };
    let set = |scales: serde_json::Value| {
        srv.request("POST", "/lora-adapters", Some(&scales));
    };
    // The global scales the server lists at start are the ones it applies. (This llama.cpp lists
    // and applies 1.0 despite --lora-init-without-apply, which only skips the context's initial
    // adapter set; the slots take the listed scales.)
    let init: Vec<(&Path, f32)> = [a, b].into_iter().zip(&listed).filter(|(_, l)| l.2 != 0.0).map(|(p, l)| (p, l.2 as f32)).collect();
    println!("scales listed at start: {:?}", listed.iter().map(|l| l.2).collect::<Vec<_>>());
    check("start (listed scales)", srv.complete(None), &init);
    set(json!([{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]));
    let base = check("POST /lora-adapters A=0 B=0", srv.complete(None), &[]);
    // Hot swap through the global scales.
    set(json!([{"id": 0, "scale": 1.0}]));
    let with_a = check("POST /lora-adapters A=1", srv.complete(None), &[(a, 1.0)]);
    set(json!([{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]));
    let with_b = check("POST /lora-adapters B=1", srv.complete(None), &[(b, 1.0)]);
    set(json!([{"id": 0, "scale": 0.5}, {"id": 1, "scale": 1.0}]));
    let stacked = check("POST /lora-adapters A=0.5 B=1", srv.complete(None), &[(a, 0.5), (b, 1.0)]);
    let texts = [&base, &with_a, &with_b, &stacked];
    for (i, t) in texts.iter().enumerate() {
        assert!(!texts[..i].contains(t), "two adapter settings give the same text, so the swap is not checked: {t:?}");
    }
    // Per-request `lora` overrides the global scales (unlisted adapters get 0).
    set(json!([{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}]));
    check("request lora B=1", srv.complete(Some(json!([{"id": 1, "scale": 1.0}]))), &[(b, 1.0)]);
    let half = check("request lora A=0.5", srv.complete(Some(json!([{"id": 0, "scale": 0.5}]))), &[(a, 0.5)]);
    assert!(!texts.contains(&&half), "A×0.5 gives the text of another setting: {half:?}");
    check("request lora A=0.5 B=1", srv.complete(Some(json!([{"id": 0, "scale": 0.5}, {"id": 1, "scale": 1.0}]))), &[(a, 0.5), (b, 1.0)]);
    // An empty list counts as no field (this llama.cpp): the global scales (A=1) again.
    check("request lora [] (global A=1)", srv.complete(Some(json!([]))), &[(a, 1.0)]);
}

/// f16 bits on one ordered integer line (−0 and +0 both 0), so adjacent values differ by 1.
fn f16_ord(bits: u16) -> i32 {
    let mag = i32::from(bits & 0x7fff);
    if bits & 0x8000 != 0 {
        -mag
    } else {
        mag
    }
}

#[test]
fn llama_export_lora_equals_merge_f16() {
    let f = fixture();
    let (sa, sb) = (0.7f32, 0.4f32);
    let theirs = f.dir.join("export-lora.gguf");
    let out = Command::new(llama_tool("llama-export-lora"))
        .args(["-m", s(&f.model), "-o", s(&theirs), "-t", "2", "--lora-scaled"])
        .arg(format!("{}:{sa},{}:{sb}", f.a.display(), f.b.display()))
        .output()
        .expect("run llama-export-lora");
    assert!(
        out.status.success(),
        "llama-export-lora failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mine = f.dir.join("merge-f16.gguf");
    let (la, lb) = (format!("{}:{sa}", f.a.display()), format!("{}:{sb}", f.b.display()));
    finetune(&["merge", "--model", s(&f.model), "--lora", &la, "--lora", &lb, "--out", s(&mine), "--type", "F16", "--threads", "2"]);

    let (base, t, m) = (GgufModel::open(&f.model).unwrap(), GgufModel::open(&theirs).unwrap(), GgufModel::open(&mine).unwrap());
    let names = |g: &GgufModel| {
        let mut v: Vec<(String, Vec<u64>, GgmlType)> = g.tensor_infos().map(|i| (i.name.clone(), i.dims.clone(), i.ty)).collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    assert_eq!(names(&t), names(&m), "llama-export-lora and finetune merge --type F16 wrote different tensor lists");
    let (mut merged, mut copied, mut n_vals, mut n_diff, mut max_ulp, mut max_abs) = (0, 0, 0usize, 0usize, 0, 0f32);
    let (mut sq_update, mut sq_diff) = (0f64, 0f64);
    for info in base.tensor_infos() {
        let (tv, mv) = (t.tensor(&info.name).unwrap(), m.tensor(&info.name).unwrap());
        if tv.info.ty == info.ty {
            // Not adapted: both copy the base's bytes.
            assert!(tv.data == base.tensor(&info.name).unwrap().data, "{}: llama-export-lora changed an unadapted tensor", info.name);
            assert!(mv.data == tv.data, "{}: finetune merge changed an unadapted tensor", info.name);
            copied += 1;
            continue;
        }
        assert_eq!(tv.info.ty, GgmlType::F16, "{}", info.name);
        merged += 1;
        let n = info.n_elements() as usize;
        let mut w = vec![0f32; n];
        finetune::quant::decode(info.ty, base.tensor(&info.name).unwrap().data, &mut w).unwrap();
        for (k, (x, y)) in tv.data.chunks_exact(2).zip(mv.data.chunks_exact(2)).enumerate() {
            let (x, y) = (u16::from_le_bytes([x[0], x[1]]), u16::from_le_bytes([y[0], y[1]]));
            let (xf, yf) = (half::f16::from_bits(x).to_f32(), half::f16::from_bits(y).to_f32());
            let ulp = (f16_ord(x) - f16_ord(y)).abs();
            n_vals += 1;
            n_diff += usize::from(ulp != 0);
            max_ulp = max_ulp.max(ulp);
            max_abs = max_abs.max((xf - yf).abs());
            sq_update += f64::from(xf - w[k]).powi(2);
            sq_diff += f64::from(xf - yf).powi(2);
        }
    }
    let (rms_update, rms_diff) = ((sq_update / n_vals as f64).sqrt(), (sq_diff / n_vals as f64).sqrt());
    println!(
        "{merged} merged tensors ({n_vals} values): {n_diff} differ ({:.4}%), by at most {max_ulp} f16 step (max |Δ| {max_abs:.3e}); \
         RMS of the update (merged − base) {rms_update:.3e}, of the difference {rms_diff:.3e}; {copied} tensors copied byte for byte by both",
        100.0 * n_diff as f64 / n_vals as f64
    );
    assert_eq!(merged, 5 * 30, "llama-export-lora merged {merged} tensors (5 targets × 30 layers expected)");
    // Both compute W + Σ scale·(alpha/r)·B·A in f32 and round once to f16; only the order of the
    // f32 sums differs, which can move a value across an f16 rounding boundary: one step at most.
    assert!(max_ulp <= 1, "merged values differ by {max_ulp} f16 steps (max |Δ| {max_abs})");
    assert!(
        rms_update > 100.0 * rms_diff,
        "the adapters barely change the weights (RMS {rms_update} vs {rms_diff}), so this compares nothing"
    );
}
