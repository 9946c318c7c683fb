//! Small helpers shared by several modules: the one random generator ([`rng`]), the
//! process memory readers ([`proc`]), the backing of opened container files ([`bytes`]),
//! checked reading of input files ([`input`]) and file text shown in messages ([`text`]).

pub mod bytes;
pub mod input;
pub mod proc;
pub mod rng;
pub mod text;
