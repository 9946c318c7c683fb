//! Small helpers shared by several modules: the one random generator ([`rng`]), the
//! process memory readers ([`proc`]), the backing of opened container files ([`bytes`]), the
//! output-path policy and atomic writes ([`outpath`]) and the stop signals ([`signals`]).

pub mod bytes;
pub mod outpath;
pub mod proc;
pub mod rng;
pub mod signals;
