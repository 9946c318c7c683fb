//! Small helpers shared by several modules: the one random generator ([`rng`]) and the
//! process memory readers ([`proc`]).

pub mod proc;
pub mod rng;
