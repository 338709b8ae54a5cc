//! weir-core: the data model every other weir crate shares.
//!
//! Records and the batch wire format, key groups, watermarks, timer queues
//! and the job graph parsed from a job file. Everything here is plain data
//! and pure functions: no threads, no files, no clocks. Time comes in as a
//! parameter so protocols can be tested deterministically. The exceptions
//! that touch the file system: [`job::load`] reads the job file (bounded),
//! [`data_roots`] canonicalizes paths to check them against the node's
//! data roots, and [`private_file`] writes a private file atomically.

pub mod batch;
pub mod data_roots;
pub mod job;
pub mod key_group;
pub mod private_file;
pub mod text;
pub mod timers;
pub mod watermark;

pub use batch::{Batch, BatchBuilder, BatchError, NO_TIMESTAMP, RecordRef};
pub use key_group::{KeyGroupRange, key_group_of};
