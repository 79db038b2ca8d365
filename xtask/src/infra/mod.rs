//! Infrastructure: what the pipeline stands on. Nothing here knows a command.

pub mod apt;
pub mod ctx;
pub mod docker;
pub mod engine_api;
pub mod fsx;
pub mod git;
pub mod http;
pub mod net;
pub mod process;
pub mod signals;
pub mod tools;
pub mod watch;
