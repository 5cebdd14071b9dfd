//! The tally Lambda function: what serving one DynamoDB stream batch needs, and nothing else.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod handler;
