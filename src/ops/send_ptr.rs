//! A raw pointer into an output buffer that parallel (rayon) tasks share, each writing a part
//! of the buffer no other task writes; the task code states which part in its `SAFETY` comment.

/// A `*mut f32` that may cross threads (the writers keep to disjoint elements).
pub(crate) struct SendPtr(pub(crate) *mut f32);

// SAFETY: the pointer is only dereferenced by tasks writing disjoint elements of a buffer that
// outlives them (the parallel call returns before the buffer's borrow ends).
unsafe impl Send for SendPtr {}
// SAFETY: as for Send; shared references only hand the pointer value to those tasks.
unsafe impl Sync for SendPtr {}
