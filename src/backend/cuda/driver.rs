//! A minimal binding of the CUDA driver API, loaded with `dlopen("libcuda.so.1")` at run time:
//! building needs no CUDA library, and a machine without the NVIDIA driver gets a clear error
//! instead of a failed link. Only what the backend uses: devices, the primary context, PTX
//! modules, memory, copies and kernel launches.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::error::Error;

/// `CUdeviceptr`.
pub type DevPtr = u64;
type Res = c_int;
type Ptr = *mut c_void;

/// The driver's entry points.
#[allow(non_snake_case)]
struct Api {
    cuInit: unsafe extern "C" fn(c_uint) -> Res,
    cuDeviceGetCount: unsafe extern "C" fn(*mut c_int) -> Res,
    cuDeviceGet: unsafe extern "C" fn(*mut c_int, c_int) -> Res,
    cuDeviceGetName: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> Res,
    cuDeviceTotalMem_v2: unsafe extern "C" fn(*mut usize, c_int) -> Res,
    cuDevicePrimaryCtxRetain: unsafe extern "C" fn(*mut Ptr, c_int) -> Res,
    cuCtxSetCurrent: unsafe extern "C" fn(Ptr) -> Res,
    cuCtxSynchronize: unsafe extern "C" fn() -> Res,
    cuModuleLoadData: unsafe extern "C" fn(*mut Ptr, *const c_void) -> Res,
    cuModuleGetFunction: unsafe extern "C" fn(*mut Ptr, Ptr, *const c_char) -> Res,
    cuMemAlloc_v2: unsafe extern "C" fn(*mut DevPtr, usize) -> Res,
    cuMemFree_v2: unsafe extern "C" fn(DevPtr) -> Res,
    cuMemGetInfo_v2: unsafe extern "C" fn(*mut usize, *mut usize) -> Res,
    cuMemcpyHtoD_v2: unsafe extern "C" fn(DevPtr, *const c_void, usize) -> Res,
    cuMemcpyDtoH_v2: unsafe extern "C" fn(*mut c_void, DevPtr, usize) -> Res,
    cuMemcpyDtoD_v2: unsafe extern "C" fn(DevPtr, DevPtr, usize) -> Res,
    cuMemsetD8_v2: unsafe extern "C" fn(DevPtr, u8, usize) -> Res,
    cuLaunchKernel: unsafe extern "C" fn(Ptr, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Ptr, *mut Ptr, *mut Ptr) -> Res,
    cuGetErrorString: unsafe extern "C" fn(Res, *mut *const c_char) -> Res,
}

// The function pointers are plain code addresses of a library that stays loaded.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn load() -> Result<Api, String> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; symbols are cast to the driver API's
    // documented signatures (cuda.h, CUDA 12/13 ABI, the `_v2` entry points).
    unsafe {
        let mut lib = std::ptr::null_mut();
        for name in [c"libcuda.so.1", c"libcuda.so"] {
            lib = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if !lib.is_null() {
                break;
            }
        }
        if lib.is_null() {
            return Err("no CUDA driver found (libcuda.so.1 could not be loaded: no NVIDIA GPU driver on this machine)".into());
        }
        macro_rules! sym {
            ($name:ident) => {{
                let s = libc::dlsym(lib, concat!(stringify!($name), "\0").as_ptr() as *const c_char);
                if s.is_null() {
                    return Err(format!("the CUDA driver lacks {} (driver too old?)", stringify!($name)));
                }
                fn_ptr(s)
            }};
        }
        Ok(Api {
            cuInit: sym!(cuInit),
            cuDeviceGetCount: sym!(cuDeviceGetCount),
            cuDeviceGet: sym!(cuDeviceGet),
            cuDeviceGetName: sym!(cuDeviceGetName),
            cuDeviceTotalMem_v2: sym!(cuDeviceTotalMem_v2),
            cuDevicePrimaryCtxRetain: sym!(cuDevicePrimaryCtxRetain),
            cuCtxSetCurrent: sym!(cuCtxSetCurrent),
            cuCtxSynchronize: sym!(cuCtxSynchronize),
            cuModuleLoadData: sym!(cuModuleLoadData),
            cuModuleGetFunction: sym!(cuModuleGetFunction),
            cuMemAlloc_v2: sym!(cuMemAlloc_v2),
            cuMemFree_v2: sym!(cuMemFree_v2),
            cuMemGetInfo_v2: sym!(cuMemGetInfo_v2),
            cuMemcpyHtoD_v2: sym!(cuMemcpyHtoD_v2),
            cuMemcpyDtoH_v2: sym!(cuMemcpyDtoH_v2),
            cuMemcpyDtoD_v2: sym!(cuMemcpyDtoD_v2),
            cuMemsetD8_v2: sym!(cuMemsetD8_v2),
            cuLaunchKernel: sym!(cuLaunchKernel),
            cuGetErrorString: sym!(cuGetErrorString),
        })
    }
}

/// A symbol address as the function pointer type `F` of its declaration.
///
/// SAFETY: the caller names the symbol's real signature; `F` is a function pointer (pointer-sized).
unsafe fn fn_ptr<F: Copy>(p: *mut c_void) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    std::mem::transmute_copy(&p)
}

fn api() -> Result<&'static Api, Error> {
    API.get_or_init(load).as_ref().map_err(|e| Error::Backend(e.clone()))
}

fn check(what: &str, r: Res) -> Result<(), Error> {
    if r == 0 {
        return Ok(());
    }
    let mut msg: *const c_char = std::ptr::null();
    let text = match api() {
        // SAFETY: cuGetErrorString sets a pointer to a static string or leaves it null.
        Ok(a) if unsafe { (a.cuGetErrorString)(r, &mut msg) } == 0 && !msg.is_null() => {
            unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
        }
        _ => format!("error {r}"),
    };
    Err(Error::Backend(format!("CUDA {what}: {text} ({r})")))
}

/// One CUDA device with its primary context made current on the calling thread on each use.
#[derive(Debug)]
pub struct Gpu {
    ctx: usize,
    /// Ordinal.
    pub ordinal: usize,
    /// Name as the driver reports it.
    pub name: String,
    /// Total memory in bytes.
    pub total: u64,
}

/// Number of CUDA devices, or why there are none.
pub fn device_count() -> Result<usize, Error> {
    let a = api()?;
    // SAFETY: plain driver calls with valid out-pointers.
    unsafe {
        check("cuInit", (a.cuInit)(0)).map_err(|e| Error::Backend(format!("no usable CUDA GPU found: {e}")))?;
        let mut n = 0;
        check("cuDeviceGetCount", (a.cuDeviceGetCount)(&mut n))?;
        Ok(n.max(0) as usize)
    }
}

impl Gpu {
    /// Open device `ordinal` (its primary context).
    pub fn open(ordinal: usize) -> Result<Gpu, Error> {
        let n = device_count()?;
        if n == 0 {
            return Err(Error::Backend("--device cuda: no CUDA GPU found (the driver reports 0 devices)".into()));
        }
        if ordinal >= n {
            return Err(Error::Backend(format!("--device cuda:{ordinal}: no such GPU ({n} found: cuda:0..cuda:{})", n - 1)));
        }
        let a = api()?;
        // SAFETY: valid out-pointers; the name buffer is NUL-terminated by the driver.
        unsafe {
            let mut dev = 0;
            check("cuDeviceGet", (a.cuDeviceGet)(&mut dev, ordinal as c_int))?;
            let mut buf = [0 as c_char; 256];
            check("cuDeviceGetName", (a.cuDeviceGetName)(buf.as_mut_ptr(), 255, dev))?;
            let name = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
            let mut total = 0usize;
            check("cuDeviceTotalMem", (a.cuDeviceTotalMem_v2)(&mut total, dev))?;
            let mut ctx = std::ptr::null_mut();
            check("cuDevicePrimaryCtxRetain", (a.cuDevicePrimaryCtxRetain)(&mut ctx, dev))?;
            let g = Gpu { ctx: ctx as usize, ordinal, name, total: total as u64 };
            g.bind()?;
            Ok(g)
        }
    }

    /// Make the context current on this thread (cheap when it already is).
    pub fn bind(&self) -> Result<(), Error> {
        // SAFETY: the context was retained in `open` and is never released.
        check("cuCtxSetCurrent", unsafe { (api()?.cuCtxSetCurrent)(self.ctx as Ptr) })
    }

    /// (free, total) device memory.
    pub fn mem_info(&self) -> Result<(u64, u64), Error> {
        self.bind()?;
        let (mut free, mut total) = (0usize, 0usize);
        check("cuMemGetInfo", unsafe { (api()?.cuMemGetInfo_v2)(&mut free, &mut total) })?;
        Ok((free as u64, total as u64))
    }

    /// Wait for all work.
    pub fn sync(&self) -> Result<(), Error> {
        self.bind()?;
        check("cuCtxSynchronize", unsafe { (api()?.cuCtxSynchronize)() })
    }

    /// Allocate `bytes` (at least 1).
    pub fn alloc(&self, bytes: usize) -> Result<DevPtr, Error> {
        self.bind()?;
        let mut p = 0;
        check("cuMemAlloc", unsafe { (api()?.cuMemAlloc_v2)(&mut p, bytes.max(1)) })?;
        Ok(p)
    }

    /// Free an allocation of [`Gpu::alloc`].
    pub fn free(&self, p: DevPtr) -> Result<(), Error> {
        self.bind()?;
        check("cuMemFree", unsafe { (api()?.cuMemFree_v2)(p) })
    }

    /// Copy host bytes to the device.
    pub fn upload(&self, dst: DevPtr, src: &[u8]) -> Result<(), Error> {
        self.bind()?;
        if src.is_empty() {
            return Ok(());
        }
        check("cuMemcpyHtoD", unsafe { (api()?.cuMemcpyHtoD_v2)(dst, src.as_ptr().cast(), src.len()) })
    }

    /// Copy device bytes to the host.
    pub fn download(&self, dst: &mut [u8], src: DevPtr) -> Result<(), Error> {
        self.bind()?;
        if dst.is_empty() {
            return Ok(());
        }
        check("cuMemcpyDtoH", unsafe { (api()?.cuMemcpyDtoH_v2)(dst.as_mut_ptr().cast(), src, dst.len()) })
    }

    /// Copy `bytes` between device allocations.
    pub fn copy(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<(), Error> {
        self.bind()?;
        if bytes == 0 {
            return Ok(());
        }
        check("cuMemcpyDtoD", unsafe { (api()?.cuMemcpyDtoD_v2)(dst, src, bytes) })
    }

    /// Zero `bytes` at `p`.
    pub fn zero(&self, p: DevPtr, bytes: usize) -> Result<(), Error> {
        self.bind()?;
        if bytes == 0 {
            return Ok(());
        }
        check("cuMemsetD8", unsafe { (api()?.cuMemsetD8_v2)(p, 0, bytes) })
    }

    /// Load a PTX module and look up its kernels by name.
    pub fn load_module(&self, ptx: &str, kernels: &[&str]) -> Result<Vec<(String, Kernel)>, Error> {
        self.bind()?;
        let a = api()?;
        let text = CString::new(ptx).map_err(|_| Error::Backend("PTX text holds a NUL byte".into()))?;
        let mut m = std::ptr::null_mut();
        check("cuModuleLoadData", unsafe { (a.cuModuleLoadData)(&mut m, text.as_ptr().cast()) })?;
        let mut out = Vec::new();
        for &k in kernels {
            let name = CString::new(k).expect("kernel names are plain");
            let mut f = std::ptr::null_mut();
            check(&format!("cuModuleGetFunction {k}"), unsafe { (a.cuModuleGetFunction)(&mut f, m, name.as_ptr()) })?;
            out.push((k.to_string(), Kernel(f as usize)));
        }
        Ok(out)
    }

    /// Launch `k` on the default stream with `args` (each an [`Arg`]).
    pub fn launch(&self, k: Kernel, grid: (u32, u32, u32), block: (u32, u32, u32), args: &[Arg]) -> Result<(), Error> {
        self.bind()?;
        // Each argument in its own 8-byte slot: on little-endian x86-64 a pointer to the slot
        // is a pointer to the i32/f32/u64 it starts with.
        let mut slots: Vec<u64> = args.iter().map(Arg::bits).collect();
        let mut ptrs: Vec<Ptr> = slots.iter_mut().map(|s| s as *mut u64 as Ptr).collect();
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        check("cuLaunchKernel", unsafe {
            (api()?.cuLaunchKernel)(
                k.0 as Ptr,
                grid.0,
                grid.1,
                grid.2,
                block.0,
                block.1,
                block.2,
                0,
                std::ptr::null_mut(),
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }
}

/// A kernel function handle.
#[derive(Clone, Copy, Debug)]
pub struct Kernel(usize);

/// One kernel argument.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// `int`.
    I32(i32),
    /// `long long`.
    I64(i64),
    /// `float`.
    F32(f32),
    /// A device pointer (0 for null).
    Ptr(DevPtr),
}

impl Arg {
    fn bits(&self) -> u64 {
        match *self {
            Arg::I32(v) => v as u32 as u64,
            Arg::I64(v) => v as u64,
            Arg::F32(v) => v.to_bits() as u64,
            Arg::Ptr(p) => p,
        }
    }
}
