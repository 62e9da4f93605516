//! One module per command.

pub(crate) mod demo;
pub(crate) mod follow;
pub(crate) mod gold;
pub(crate) mod ingest;
pub(crate) mod maintain;
pub(crate) mod produce;
pub(crate) mod quality;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod synapse;
pub(crate) mod token;
