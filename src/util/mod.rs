//! Small helpers shared by several modules: the one random generator ([`rng`]), the
//! process memory readers ([`proc`]) and the backing of opened container files ([`bytes`]).

pub mod bytes;
pub mod proc;
pub mod rng;
