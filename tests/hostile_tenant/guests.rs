//! Attacks: guests (see ../hostile_tenant.rs).
#![allow(unused_imports)]
use crate::common::*;
