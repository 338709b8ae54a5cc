//! A hostile tenant: someone with the REST token who writes any job file and
//! any guest code, or a process on the network without a valid certificate.
//! One test per attack, each driving the real `weir` binaries: the attack is
//! refused with a clear error, no weir process panics, aborts or hangs, and
//! neighbours keep running. The threat model is in SECURITY.md.

mod common;

#[path = "hostile_tenant/cluster.rs"]
mod cluster;
#[path = "hostile_tenant/embedded.rs"]
mod embedded;
#[path = "hostile_tenant/guests.rs"]
mod guests;
#[path = "hostile_tenant/job_files.rs"]
mod job_files;
