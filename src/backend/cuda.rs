//! The CUDA backend's place. This build has no CUDA backend compiled in (it arrives behind
//! `--features cuda`, with its kernels in `ggml/*.cu`); this stand-in keeps the device choice
//! in one place and fails with a clear error, as candle's `dummy_cuda_backend` does.

use crate::error::Error;

/// Which device a command runs on (`--device cpu|cuda[:N]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU backend.
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl Device {
    /// Parse `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Device::Cuda(n)),
                _ => Err(Error::Usage(format!("--device '{s}': expected cpu, cuda or cuda:N"))),
            },
        }
    }

    /// Check that this build can run on the device.
    pub fn check(self) -> Result<(), Error> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(n) => Err(Error::Backend(format!(
                "--device cuda:{n}: this finetune was built without the CUDA backend; use --device cpu (the default)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_and_the_missing_backend() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::parse("CUDA:1").unwrap(), Device::Cuda(1));
        assert!(Device::parse("tpu").unwrap_err().to_string().contains("expected cpu, cuda or cuda:N"));
        let e = Device::Cuda(0).check().unwrap_err().to_string();
        assert!(e.contains("built without the CUDA backend"), "{e}");
    }
}
