//! The CUDA backend (`--features cuda`) and what every build needs of it: the device choice
//! ([`Device`]) and the GPU memory planner ([`plan`], pure host arithmetic, tested on the CPU).
//!
//! With the feature: [`driver`] (the CUDA driver API loaded with dlopen at run time),
//! [`backend::CudaBackend`] (the [`crate::backend::Backend`] and
//! [`crate::backend::TrainBackend`] ops on device buffers) and the kernels of `ggml/*.cu`,
//! compiled to PTX by `build.rs`. Without it, `--device cuda` fails with a clear error, as
//! candle's `dummy_cuda_backend` does.

pub mod plan;

#[cfg(feature = "cuda")]
pub mod backend;
#[cfg(feature = "cuda")]
pub mod driver;

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

    /// Check that this build can run on the device: without the `cuda` feature a CUDA device
    /// is refused; with it, the driver is loaded and the GPU looked up (a machine without one
    /// gets "no CUDA GPU found").
    pub fn check(self) -> Result<(), Error> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(n) => Err(Error::Backend(format!(
                "--device cuda:{n}: this finetune was built without the CUDA backend (build with --features cuda); \
                 use --device cpu (the default)"
            ))),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => driver::Gpu::open(n).map(|_| ()).map_err(|e| match e {
                Error::Backend(m) if m.starts_with("--device") => Error::Backend(m),
                Error::Backend(m) => Error::Backend(format!("--device cuda:{n}: {m}")),
                other => other,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::parse("CUDA:1").unwrap(), Device::Cuda(1));
        assert_eq!(Device::parse("cuda").unwrap(), Device::Cuda(0));
        assert!(Device::parse("tpu").unwrap_err().to_string().contains("expected cpu, cuda or cuda:N"));
        assert!(Device::Cpu.check().is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn the_missing_backend() {
        let e = Device::Cuda(0).check().unwrap_err().to_string();
        assert!(e.contains("built without the CUDA backend"), "{e}");
    }

    /// On a machine without the NVIDIA driver (CI), the feature build says so.
    #[cfg(feature = "cuda")]
    #[test]
    fn no_gpu_is_a_clear_error() {
        if std::path::Path::new("/dev/nvidiactl").exists() {
            return; // a GPU machine: tests/gpu covers it
        }
        let e = Device::Cuda(0).check().unwrap_err().to_string();
        assert!(e.contains("--device cuda:0") && (e.contains("no CUDA driver found") || e.contains("no CUDA GPU found")), "{e}");
    }
}
