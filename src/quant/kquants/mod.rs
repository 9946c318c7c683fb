//! The k-quant super-block formats (256 elements): Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the
//! activation format Q8_K.

pub mod q2_k;
pub mod q3_k;
pub mod q4_k;
pub mod q5_k;
pub mod q6_k;
pub mod q8_k;
