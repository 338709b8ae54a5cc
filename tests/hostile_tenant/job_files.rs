//! Attacks: job_files (see ../hostile_tenant.rs).
#![allow(unused_imports)]
use crate::common::*;
