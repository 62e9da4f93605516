//! End-to-end tests over the real `patientflow` binary and real Delta tables on disk.

// Test code, helpers included: a panic with a message is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod adf;
mod adls;
mod alerts;
mod bad_input;
mod crash;
mod demo;
mod faults;
mod follow;
mod gold;
mod gold_incremental;
mod gold_scale;
mod kafka;
mod load;
mod maintain;
mod open_stays;
mod pipeline;
mod python_reader;
mod run;
mod scheduler;
mod security;
mod serve;
mod synapse;
