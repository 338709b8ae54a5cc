//! One job master for `weir run` and the cluster: the checkpoint
//! coordinator, failover, and the commands users send a running job
//! (savepoint, stop, cancel, upgrade, rollback, rescale).
//!
//! [`machine`] makes every decision with no IO and is tested event by
//! event; [`driver`] runs it on a thread and carries its actions out
//! through a [`driver::Deployer`], which is where embedded runs and
//! clusters differ (local threads, or workers over QUIC).

pub mod api;
pub mod command;
pub mod driver;
pub mod machine;
pub mod metadata;
