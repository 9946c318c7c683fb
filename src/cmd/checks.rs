//! Range checks of the numeric options, made before any work: a NaN, an infinity or an
//! out-of-range value is a clear usage error instead of a run that prints NaN or trains nothing.

use finetune::{Error, Result};

use super::train::TrainArgs;

/// Largest |scale| accepted in `--lora PATH:SCALE` (llama.cpp puts no bound; beyond this an
/// adapter only adds noise, and ±1e30 overflows the activations).
pub const MAX_LORA_SCALE: f32 = 100.0;

fn finite_positive(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::usage(format!("{name} {v} must be a finite number > 0")))
    }
}

fn finite_non_negative(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::usage(format!("{name} {v} must be a finite number ≥ 0")))
    }
}

/// Every numeric training option in range.
pub fn train_numbers(a: &TrainArgs) -> Result<()> {
    finite_positive("--lr", f64::from(a.lr))?;
    finite_positive("--alpha", f64::from(a.alpha))?;
    finite_positive("--adam-eps", f64::from(a.adam_eps))?;
    for (name, b) in [("--beta1", a.beta1), ("--beta2", a.beta2)] {
        if !(b.is_finite() && (0.0..1.0).contains(&b)) {
            return Err(Error::usage(format!("{name} {b} must be in [0, 1)")));
        }
    }
    finite_non_negative("--weight-decay", f64::from(a.weight_decay))?;
    finite_non_negative("--max-grad-norm", f64::from(a.max_grad_norm))?;
    if !(a.dropout.is_finite() && (0.0..1.0).contains(&a.dropout)) {
        return Err(Error::usage(format!("--dropout {} is outside [0, 1)", a.dropout)));
    }
    match a.steps {
        Some(0) => return Err(Error::usage("--steps 0: give at least 1 optimizer step")),
        Some(_) => {}
        None => {
            if !(a.epochs.is_finite() && a.epochs > 0.0) {
                return Err(Error::usage(format!("--epochs {} must be a finite number > 0 (or give --steps N)", a.epochs)));
            }
        }
    }
    if a.grad_accum == 0 {
        return Err(Error::usage("--grad-accum must be at least 1"));
    }
    if a.rank == 0 {
        return Err(Error::usage("--rank must be at least 1"));
    }
    Ok(())
}

/// Split `PATH[:SCALE]` (scale 1 by default; a suffix that is not a number is part of the path)
/// and check the scale: finite, |scale| ≤ [`MAX_LORA_SCALE`].
pub fn lora_spec(spec: &str) -> Result<(&str, f32)> {
    let (path, scale) = match spec.rsplit_once(':') {
        Some((p, s)) if !p.is_empty() => match s.trim().parse::<f32>() {
            Ok(v) => (p, v),
            Err(_) => (spec, 1.0),
        },
        _ => (spec, 1.0),
    };
    if !scale.is_finite() || scale.abs() > MAX_LORA_SCALE {
        return Err(Error::usage(format!(
            "--lora {spec}: the scale {scale} must be a finite number between -{MAX_LORA_SCALE} and {MAX_LORA_SCALE}"
        )));
    }
    Ok((path, scale))
}

/// `--threads`, capped to 4 × the cores (at most 1024) with a warning: more threads than that
/// only cost memory, and tens of thousands fail to start.
pub fn threads(asked: Option<usize>) -> Result<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(n) = asked else { return Ok(cores) };
    if n == 0 {
        return Err(Error::usage("--threads must be at least 1"));
    }
    let cap = (4 * cores).min(1024);
    if n > cap {
        eprintln!("warning: --threads {n} is more than 4 × the {cores} cores; using {cap}");
        return Ok(cap);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_specs() {
        assert_eq!(lora_spec("a.gguf").unwrap(), ("a.gguf", 1.0));
        assert_eq!(lora_spec("a.gguf:0.5").unwrap(), ("a.gguf", 0.5));
        assert_eq!(lora_spec("dir:x/a.gguf").unwrap(), ("dir:x/a.gguf", 1.0));
        for bad in ["a.gguf:nan", "a.gguf:inf", "a.gguf:-1e30", "a.gguf:101"] {
            assert!(lora_spec(bad).is_err(), "{bad}");
        }
    }
}
