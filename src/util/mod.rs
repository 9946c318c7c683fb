//! Small helpers shared by several modules: the one random generator ([`rng`]), the
//! process memory readers ([`proc`]), the backing of opened container files ([`bytes`]), the
//! output-path policy and atomic writes ([`outpath`]), the stop signals ([`signals`]), checked
//! reading of input files ([`input`]) and file text shown in messages ([`text`]).

pub mod alloc;
pub mod bytes;
pub mod input;
pub mod outpath;
pub mod proc;
pub mod rng;
pub mod signals;
pub mod text;
