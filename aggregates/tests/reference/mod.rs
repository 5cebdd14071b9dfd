//! The hand-written university rules: an independent implementation of the university contract
//! (`docs/university.md`), kept as the differential oracle for `aggregates/rules/university.toml`
//! (`rules_match_code.rs` checks that the compiled file assesses every image as this code does).
//!
//! It was the library's implementation before rules became data: [`source`] parses and validates
//! an image into a typed [`source::SourceItem`], [`deltas`] says what it contributes, [`keys`]
//! names the aggregate items (as enums) and who owns a table key. [`dates`] reads the contract's
//! dates and date-times by hand, with its own calendar arithmetic: it shares no parser with the
//! library's `aggregates::dates` (nor uses chrono's), so a bug there is caught, not copied.

pub mod dates;
pub mod deltas;
pub mod keys;
pub mod source;
